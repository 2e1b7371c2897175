"""Streamlit helpers shared by the dashboard's pages (the one place besides pages that uses st).

context.py      the process-wide RunManager, the data source, cached data and models
runs_view.py    run names, tables, pickers and the live panel that polls a training run
predictions.py  display helpers for single images (no Streamlit)
text.py         plain(): labels, paths, names and errors from users shown as text, not markdown
favicon.png     the page icon, served by this server (no request leaves it)
"""
