"""Runs on screen: names, tables, pickers and the live panel that polls a training run.

The training thread never calls Streamlit. The live panel is an `st.fragment` that re-runs every
POLL_SECONDS while its run is queued or running, reads `RunManager.snapshot` (or the run folder,
for a run another process trains) and redraws; when the run ends it asks for one full rerun.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from kdcore.manager import RunManager
from kdcore.plots import learning_curves, live_run_figure
from kdcore.runs import ACTIVE, RunError, RunRecord
from ui.context import POLL_SECONDS


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
    settled = record.status not in ACTIVE
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


def live_progress(record: RunRecord, state: dict[str, Any] | None) -> float:
    """Fraction done, to the batch while the manager trains it, else by finished epochs."""
    if state and state["status"] == "running" and state["steps_per_epoch"]:
        total = state["epochs"] * state["steps_per_epoch"]
        return min(1.0, state["step"] / max(1, total))
    return record.progress


def current_status(record: RunRecord, state: dict[str, Any] | None) -> str:
    """The live status while this server trains the run, else the one its folder tells."""
    return state["status"] if state else record.status


def runs_table(records: Sequence[RunRecord], manager: RunManager) -> list[dict[str, Any]]:
    """Rows for st.dataframe: one per run, newest first."""
    rows = []
    for record in records:
        state = manager.snapshot(record.run_id)
        status = current_status(record, state)
        rows.append(
            {
                "run": record.run_id,
                "role": record.spec.role,
                "label": record.spec.label,
                "status": status,
                "progress": live_progress(record, state),
                "best test acc (%)": _percent(record.best_test_acc),
                "started at": format_time(record.info.get("started_at") or record.created_at),
            }
        )
    return rows


def _percent(value: float | None) -> float | None:
    return round(100 * value, 2) if value is not None else None


RUN_TABLE_COLUMNS = {
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
    "best test acc (%)": st.column_config.NumberColumn(format="%.2f"),
}


def show_runs_table(records: Sequence[RunRecord], manager: RunManager, key: str) -> None:
    if not records:
        st.info("No runs yet.")
        return
    st.dataframe(
        runs_table(records, manager), hide_index=True, column_config=RUN_TABLE_COLUMNS, key=key
    )


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


def with_weights(records: Sequence[RunRecord], roles: Sequence[str]) -> list[RunRecord]:
    """Runs of these roles with best weights to load (finished or stopped), in `roles` order."""
    usable = [
        r
        for r in records
        if r.spec.role in roles and r.status not in ACTIVE and r.checkpoint("best").is_file()
    ]
    return sorted(usable, key=lambda r: roles.index(r.spec.role))  # stable: newest first per role


def submit_ui(manager: RunManager, make_spec: Callable[[], Any]) -> str | None:
    """Build the spec and queue it; a RunError (impossible settings) is shown, nothing starts."""
    try:
        return manager.submit(make_spec())
    except (RunError, ValueError) as error:
        st.error(f"Not started: {error}")
        return None


def live_run_panel(
    manager: RunManager,
    run_id: str,
    key: str,
    overlay: Callable[[], dict[str, Sequence[dict[str, Any]]]] | None = None,
) -> None:
    """Progress, speed, ETA, live curves and a Stop button for one run; polls while it is active.

    `overlay` returns other runs' epoch rows to draw the live test accuracy over.
    """
    state = manager.snapshot(run_id)
    try:
        record = manager.run(run_id)
    except RunError as error:
        st.warning(str(error))
        return
    status = current_status(record, state)
    if status in ACTIVE:
        st.fragment(run_every=POLL_SECONDS)(_poll_live_run)(manager, run_id, key, overlay, status)
    else:
        _draw_run(manager, record, state, key, overlay)


def _poll_live_run(manager: RunManager, run_id: str, key: str, overlay, drawn_status: str) -> None:
    state = manager.snapshot(run_id)
    record = manager.run(run_id)
    if current_status(record, state) != drawn_status:
        # queued -> running, or the run ended: redraw the whole page once (queue, titles), which
        # polls again only while the run is still active
        st.rerun()
    _draw_run(manager, record, state, key, overlay)


def _draw_run(manager, record: RunRecord, state: dict[str, Any] | None, key: str, overlay) -> None:
    status = current_status(record, state)
    metrics = state["metrics"] if state else list(record.metrics)
    st.markdown(f"**{run_title(record)}** &nbsp; `{record.run_id}`")
    _status_line(record, state, status)
    columns = st.columns(4)
    last = metrics[-1] if metrics else {}
    speed = (state or {}).get("images_per_s") or last.get("images_per_s")
    eta = (state or {}).get("eta_s") if status == "running" else None
    columns[0].metric("epochs done", f"{len(metrics)} / {record.spec.epochs}")
    columns[1].metric("images / s", f"{speed:,.0f}" if speed else "–")
    columns[2].metric("ETA", _duration(eta) if eta is not None else "–")
    columns[3].metric(
        "best test acc", f"{max(r['test_acc'] for r in metrics):.1%}" if metrics else "–"
    )
    if status in ACTIVE and state is not None:
        if st.button("Stop this run", key=f"{key}.stop_btn", type="secondary"):
            manager.stop(record.run_id)
            st.toast("Stopping at the next batch...")
    elif status in ACTIVE:
        st.caption("Another process (the CLI) trains this run; stop it there.")
    batch_losses = state["batch_losses"] if state else []
    steps = state["steps_per_epoch"] if state else None
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


def _status_line(record: RunRecord, state: dict[str, Any] | None, status: str) -> None:
    if state and state["phase"] == "teacher" and status == "running":
        done = state["teacher_progress"] or 0.0
        st.progress(
            done,
            text=f"computing teacher outputs for epoch {state['epoch'] + 1} "
            f"(stored, so later runs from this teacher skip it): {done:.0%}",
        )
    elif state and status == "running" and state["steps_per_epoch"]:
        total = state["epochs"] * state["steps_per_epoch"]
        text = (
            f"running · epoch {state['epoch']}/{state['epochs']} · batch {state['batch']}/"
            f"{state['batches']} · step {state['step']}/{total}"
        )
        st.progress(min(1.0, state["step"] / max(1, total)), text=text)
    elif status == "queued":
        st.progress(0.0, text="queued · waits for the runs before it")
    else:
        error = (state or {}).get("error") or record.info.get("error")
        text = f"{status}" + (f": {error}" if error and status != "finished" else "")
        st.progress(record.progress, text=text)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def queue_table(manager: RunManager, records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The queued and running runs of this server, in the order they will train."""
    active = manager.active_ids()
    rows = []
    for record in sorted(records, key=lambda r: r.created_at):
        if record.run_id in active:
            state = manager.snapshot(record.run_id) or {}
            rows.append(
                {
                    "run": record.run_id,
                    "what": run_title(record),
                    "status": state.get("status"),
                    "phase": state.get("phase"),
                }
            )
    return rows
