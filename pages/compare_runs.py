"""Compare runs: overlaid curves, a summary table, the study's numbers beside ours, downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import streamlit as st

from kdcore.plots import learning_curves
from kdcore.runs import RunRecord
from kdcore.study import comparison_rows
from ui.context import get_queue, init_state
from ui.runs_view import legend_below, percent, run_picker, run_title

init_state({"compare.ids": None, "compare.smoothing": 0.0, "compare.which": "best"})


def summary_row(record: RunRecord) -> dict[str, Any]:
    """One line of the comparison table (accuracies in percent)."""
    spec, last = record.spec, (record.metrics[-1] if record.metrics else {})
    distilled = spec.role == "distill"
    cache = record.run_status.teacher_cache or {}
    return {
        "what": run_title(record),
        "role": spec.role,
        "status": record.status,
        "best test acc (%)": percent(record.best_test_acc),
        "final test acc (%)": percent(record.final_test_acc),
        "final val acc (%)": percent(last.get("val_acc")),
        "epochs": f"{len(record.metrics)}/{spec.epochs}",
        "time (s)": round(last["elapsed_s"], 1) if "elapsed_s" in last else None,
        "T": spec.temperature if distilled else None,
        "alpha": spec.alpha if distilled else None,
        "teacher": spec.teacher if distilled else None,
        "teacher cache saved (s)": cache.get("seconds_saved"),
        "run": record.run_id,
    }


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def study_table(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    return [
        {
            "setting": row["setting"],
            "study (%)": percent(row["study_acc"]),
            "ours (%)": percent(row["our_acc"]),
            "our run": row["run_id"] or "–",
            "our data": row["data"] or "–",
        }
        for row in comparison_rows(records)
    ]


def downloads_ui(records: Sequence[RunRecord]) -> None:
    """CSV of one run's epochs, and its weights."""
    st.subheader("Downloads")
    run_id = run_picker("Run", records, key="compare.download_run")
    if run_id is None:
        return
    record = next(r for r in records if r.run_id == run_id)
    left, right = st.columns(2)
    left.download_button(
        "Epoch metrics (CSV)",
        to_csv(list(record.metrics)),
        file_name=f"{run_id}-metrics.csv",
        mime="text/csv",
        disabled=not record.metrics,
        key="compare.metrics_csv_btn",
    )
    which = right.radio(
        "Weights", ("best", "last"), key="compare.which", persist_state="session", horizontal=True
    )
    path = record.checkpoint(which)
    right.download_button(
        f"{which}.pt",
        path.read_bytes if path.is_file() else b"",
        file_name=f"{run_id}-{which}.pt",
        mime="application/octet-stream",
        disabled=not path.is_file(),
        key="compare.checkpoint_btn",
    )


st.title("Compare runs")
queue = get_queue()
records = [r for r in queue.runs() if r.metrics]
if not records:
    st.info("No run has finished an epoch yet. Start one on the teacher or student page.")
    st.stop()

by_id = {r.run_id: r for r in records}
if st.session_state["compare.ids"] is None:
    st.session_state["compare.ids"] = list(by_id)[:4]
st.session_state["compare.ids"] = [rid for rid in st.session_state["compare.ids"] if rid in by_id]
chosen = st.multiselect(
    "Runs",
    list(by_id),
    key="compare.ids",
    persist_state="session",
    format_func=lambda rid: run_title(by_id[rid]),
)
smoothing = st.slider(
    "Smoothing", 0.0, 0.95, step=0.05, key="compare.smoothing", persist_state="session"
)
series = {run_title(by_id[rid]): list(by_id[rid].metrics) for rid in chosen}
left, right = st.columns(2)
left.plotly_chart(
    legend_below(learning_curves(series, "test_acc", smoothing)),
    key="compare.acc_chart",
    width="stretch",
)
right.plotly_chart(
    legend_below(learning_curves(series, "test_loss", smoothing)),
    key="compare.loss_chart",
    width="stretch",
)

table = [summary_row(by_id[rid]) for rid in chosen]
st.subheader("Runs side by side")
st.dataframe(table, hide_index=True)
st.download_button(
    "Table (CSV)",
    to_csv(table),
    file_name="runs.csv",
    mime="text/csv",
    disabled=not table,
    key="compare.table_csv_btn",
)

st.subheader("The study's five settings beside ours")
st.caption(
    "Ours: the newest finished run of each setting (best test accuracy). The study used "
    "full CIFAR-10 and ResNet101 teachers."
)
st.dataframe(study_table(queue.runs()), hide_index=True)
downloads_ui(records)
