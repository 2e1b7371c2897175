"""Runs on screen: names, tables, pickers and the live panel that polls a training run.

Runs train in their own processes; everything here reads run folders. The live panel is an
`st.fragment` that re-runs every POLL_SECONDS while its run is queued or running, reads the run's
status, epoch rows and the new batch losses, and redraws; when the run ends it asks for one full
rerun.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from kdcore.plots import learning_curves, live_run_figure
from kdcore.progress import format_seconds
from kdcore.runs import RunError, RunRecord, stop_requested_at
from kdcore.scheduler import RunQueue
from ui.context import POLL_SECONDS, batch_tail
from ui.text import plain


def run_title(record: RunRecord) -> str:
    """A short human name: what the run is, its best accuracy and the end of its id."""
    spec = record.spec
    if spec.role == "teacher":
        stem = f", {spec.model_stem} stem" if spec.model_stem else ""
        what = f"teacher {spec.model_arch} ({spec.init}{stem})"
    elif spec.role == "student":
        what = "student alone"
    else:
        what = f"distilled T={spec.temperature:g} α={spec.alpha:g}"
    # Only facts that no longer change: a picker's labels are not redrawn while a run trains.
    settled = not record.active
    best = f" · {record.best_test_acc:.1%}" if settled and record.best_test_acc is not None else ""
    status = f" · {record.status}" if record.status in ("stopped", "failed", "interrupted") else ""
    label = f"{spec.label} · " if spec.label else ""
    return f"{label}{what}{status}{best} · {record.run_id[-4:]}"


def legend_below(figure: go.Figure) -> go.Figure:
    """Put a chart's legend under it, so long run names do not squeeze the plot."""
    figure.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0})
    return figure


def format_time(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else ""


def percent(value: float | None) -> float | None:
    """A fraction as a percentage rounded for tables; None stays None."""
    return round(100 * value, 2) if value is not None else None


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV; the columns are every key any row has, in the order they first appear."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list({key: None for r in rows for key in r}))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def runs_table(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Rows for st.dataframe: one per run, newest first."""
    return [
        {
            "run": record.run_id,
            "role": record.spec.role,
            "label": record.spec.label,
            "status": record.status,
            "progress": record.progress,
            "best test acc (%)": percent(record.best_test_acc),
            "started at": format_time(record.run_status.started_at or record.created_at),
        }
        for record in records
    ]


RUN_TABLE_COLUMNS = {
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
    "best test acc (%)": st.column_config.NumberColumn(format="%.2f"),
}


def show_runs_table(records: Sequence[RunRecord], key: str) -> None:
    if not records:
        st.info("No runs yet.")
        return
    st.dataframe(runs_table(records), hide_index=True, column_config=RUN_TABLE_COLUMNS, key=key)


def run_picker(
    label: str,
    records: Sequence[RunRecord],
    key: str,
    none_label: str | None = None,
    help: str | None = None,
) -> str | None:
    """A selectbox of run ids shown by title; with `none_label`, a last "no run" choice (None)."""
    titles = {record.run_id: run_title(record) for record in records}
    options: list[str | None] = list(titles) + ([None] if none_label else [])
    if not options:
        return None
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.selectbox(
        label,
        options,
        key=key,
        persist_state="session",
        help=help,
        format_func=lambda run_id: titles.get(run_id, none_label or ""),
    )


def show_newest_active(key: str, records: Sequence[RunRecord]) -> None:
    """On a first visit, a page's run picker shows the newest queued or running run."""
    if key not in st.session_state:
        active = [r for r in records if r.active]  # records are newest first
        if active:
            st.session_state[key] = active[0].run_id


def with_weights(records: Sequence[RunRecord], roles: Sequence[str]) -> list[RunRecord]:
    """Runs of these roles with best weights to load (finished or stopped), in `roles` order."""
    usable = [
        r
        for r in records
        if r.readable and r.spec.role in roles and not r.active and r.checkpoint("best").is_file()
    ]
    return sorted(usable, key=lambda r: roles.index(r.spec.role))  # stable: newest first per role


def submit_ui(queue: RunQueue, make_spec: Callable[[], Any]) -> str | None:
    """Build the spec and queue it; a RunError (impossible settings) is shown, nothing starts."""
    try:
        return queue.submit(make_spec())
    except (RunError, ValueError) as error:
        st.error(f"Not started: {plain(error)}")
        return None


def live_run_panel(
    queue: RunQueue,
    run_id: str,
    key: str,
    overlay: Callable[[], dict[str, Sequence[dict[str, Any]]]] | None = None,
) -> None:
    """Progress, speed, ETA, live curves and a Stop button for one run; polls while it is active.

    Whoever started the run (this dashboard, another one, the CLI), the panel reads its folder.
    `overlay` returns other runs' epoch rows to draw the live test accuracy over.
    """
    try:
        record = queue.run(run_id)
    except RunError as error:
        st.warning(plain(error))
        return
    if record.active:
        st.fragment(run_every=POLL_SECONDS)(_poll_live_run)(
            queue, run_id, key, overlay, record.status
        )
    else:
        _draw_run(queue, record, key, overlay)


def _poll_live_run(queue: RunQueue, run_id: str, key: str, overlay, drawn_status: str) -> None:
    record = queue.run(run_id)
    if record.status != drawn_status:
        # queued -> running, or the run ended: redraw the whole page once (queue, titles), which
        # polls again only while the run is still active
        st.rerun()
    _draw_run(queue, record, key, overlay)


def _draw_run(queue: RunQueue, record: RunRecord, key: str, overlay) -> None:
    status, metrics = record.run_status, list(record.metrics)
    st.markdown(f"**{plain(run_title(record))}** &nbsp; {plain(record.run_id)}")
    _status_line(record)
    columns = st.columns(4)
    last = metrics[-1] if metrics else {}
    speed = status.images_per_s if record.active else last.get("images_per_s")
    eta = status.eta_s if record.status == "running" else None
    columns[0].metric("epochs done", f"{len(metrics)} / {record.spec.epochs}")
    columns[1].metric("images / s", f"{speed:,.0f}" if speed else "–")
    columns[2].metric("ETA", format_seconds(eta) if eta is not None else "–")
    columns[3].metric(
        "best test acc", f"{max(r['test_acc'] for r in metrics):.1%}" if metrics else "–"
    )
    if record.active:
        if stop_requested_at(record.folder) is not None:
            st.caption("Stop requested: the run stops at its next batch.")
        elif st.button("Stop this run", key=f"{key}.stop_btn", type="secondary"):
            try:
                queue.stop(record.run_id)
                st.toast("Stopping at the next batch...")
            except RunError as error:
                st.warning(plain(error))
    steps = status.total_steps // status.epochs if status.epochs else None
    batch_losses = batch_tail(str(record.folder)).read()
    st.plotly_chart(
        live_run_figure(metrics, batch_losses, steps), key=f"{key}.live_chart", width="stretch"
    )
    if overlay is not None:
        series = {f"this run ({record.run_id[-4:]})": metrics, **overlay()}
        if len(series) > 1:
            figure = legend_below(
                learning_curves(series, "test_acc", title="test accuracy: this run and others")
            )
            st.plotly_chart(figure, key=f"{key}.overlay_chart", width="stretch")


def _status_line(record: RunRecord) -> None:
    status = record.run_status
    if record.status == "running" and status.phase.startswith("teacher outputs"):
        done, total = (int(n) for n in status.phase.split()[-1].split("/"))
        st.progress(
            done / max(1, total),
            text=f"computing teacher outputs for epoch {status.epoch or 1}: {done}/{total} "
            "(stored, so later runs from this teacher skip it)",
        )
    elif record.status == "running" and status.total_steps:
        text = f"running · {plain(status.phase)} · step {status.step}/{status.total_steps}"
        st.progress(record.progress, text=text)
    elif record.status == "running":
        st.progress(0.0, text=f"running · {plain(status.phase)}")
    elif record.status == "queued":
        st.progress(0.0, text="queued · waits for the runs before it")
    else:
        error = status.error if record.status != "finished" else None
        st.progress(record.progress, text=record.status + (f": {plain(error)}" if error else ""))


def queue_table(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The queued and running runs, in the order they started or will start."""
    return [
        {"run": r.run_id, "what": run_title(r), "status": r.status, "phase": r.run_status.phase}
        for r in sorted((r for r in records if r.active), key=lambda r: r.created_at)
    ]
