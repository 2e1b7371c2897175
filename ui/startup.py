"""The first import of app.py and of every page: what Streamlit leaves to the app at start-up.

- Heavy modules (torch, pandas, plotly) are imported here, once. Tabs that connect together to a
  fresh server run their scripts on several threads; importing these from all of them at once
  can hand one thread a module still being initialised by another ("partially initialized
  module 'pandas' has no attribute 'Series'"). The import lock of this module serialises it.
- Streamlit serves the files of pages/ as an old-style multipage app until app.py has called
  `st.navigation` once, so the first visitor of a cold server who opens a page URL got that
  page alone, without app.py's sidebar, under a fallback menu. That mode is switched off here,
  and `through_app` sends a page that Streamlit ran by itself through app.py.
"""

from __future__ import annotations

import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import streamlit as st
import torch  # noqa: F401
from streamlit.runtime.pages_manager import PagesManager

PagesManager.uses_pages_directory = False  # from now on app.py's st.navigation picks the page
_THROUGH_APP = "startup.through_app"


def entered_through_app() -> None:
    """app.py, before it runs the chosen page: this session's pages run inside app.py."""
    st.session_state[_THROUGH_APP] = True


def through_app() -> None:
    """A page's first call: if Streamlit ran this page file by itself, run it again through
    app.py (the same URL, so the same page, now with the sidebar and the data source)."""
    if not st.session_state.get(_THROUGH_APP):
        st.rerun()
