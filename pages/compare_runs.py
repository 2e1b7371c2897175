"""Compare runs: overlaid curves, a summary table, the study's numbers beside ours, downloads."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
from collections.abc import Sequence
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from kdcore.evaluation import read_evaluation
from kdcore.models import TEACHER_ARCHS
from kdcore.plot_evaluation import confusion_heatmap, per_class_accuracy, reliability_diagram
from kdcore.plots import distillation_terms_figure, learning_curves
from kdcore.run_settings import differing_settings, settings_of
from kdcore.runs import RunError, RunRecord, RunSpec
from kdcore.study import STUDY_TEACHER_ARCH, Protocol, baseline_like, study_rows
from ui.context import data_source, get_queue, init_state, set_widget_value
from ui.runs_view import (
    EMPTY_CELL,
    TOAST_KEY,
    bold_best,
    chart_colors,
    legend_below,
    percent,
    run_picker,
    run_title,
    show_pending_toast,
    show_table,
    submit_ui,
    to_csv,
)
from ui.text import plain

ui.startup.through_app()

init_state({"compare.ids": None, "compare.smoothing": 0.0, "compare.which": "best"})
init_state({"compare.log_loss": False, "compare.every_setting": False})


def summary_row(record: RunRecord) -> dict[str, Any]:
    """One line of the comparison table (accuracies in percent)."""
    spec, last = record.spec, (record.metrics[-1] if record.metrics else {})
    distilled = spec.role == "distill"
    cache = record.run_status.teacher_cache or {}
    report = read_evaluation(record.folder) or {}
    return {
        "what": run_title(record),
        "role": spec.role,
        "status": record.status,
        "best test acc (%)": percent(record.best_test_acc),
        "final test acc (%)": percent(record.final_test_acc),
        "final val acc (%)": percent(last.get("val_acc")),
        "final test acc with TTA (%)": percent(last.get("test_acc_tta")),
        "agreement (%)": percent(report.get("agreement")),
        "KL(teacher || student)": _rounded(report.get("kl_teacher_student")),
        "ECE": _rounded(report.get("ece")),
        "NLL": _rounded(report.get("nll")),
        "epochs": f"{len(record.metrics)}/{spec.epochs}",
        "time (s)": round(last["elapsed_s"], 1) if "elapsed_s" in last else None,
        "T": spec.temperature if distilled else None,
        "alpha": spec.alpha if distilled else None,
        "teacher": spec.teacher if distilled else None,
        "teacher TTA": spec.teacher_tta if distilled else None,
        "teacher cache saved (s)": cache.get("seconds_saved"),
        "seed": spec.seed,
        "run": record.run_id,
    }


def study_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "setting": row["setting"],
            "study (%)": percent(row["study_acc"]),
            "ours (%)": percent(row["our_acc"]),
            "± std": percent(row["our_std"]),
            "n": row["n"],
            "seeds": ", ".join(map(str, sorted(row["seeds"]))) or EMPTY_CELL,
            "arch": row["arch"],
            "stem": row["stem"] or EMPTY_CELL,
            "epochs": row["epochs"],
            "subset": row["subset"],
            "data": row["data"],
            "our runs": ", ".join(row["run_ids"]) or EMPTY_CELL,
        }
        for row in rows
    ]


def study_ui(records: Sequence[RunRecord]) -> None:
    """The study's rows beside ours, from runs in its protocol only, and what fills the others."""
    st.subheader("The study's five settings beside ours")
    show_pending_toast()  # a study run just queued
    arch = st.selectbox(
        "Teachers", TEACHER_ARCHS, index=TEACHER_ARCHS.index(STUDY_TEACHER_ARCH),
        key="compare.study_arch", bind="query-params",
        help="The study's teachers are ResNet101s.",
    )  # fmt: skip
    data = data_source()
    st.caption(
        f"Ours: mean final test accuracy over seeds, from finished runs on {plain(data)} in the "
        "study's protocol only: its full training split, 10 epochs, the row's architecture and "
        "initialisation, T = 2 and alpha = 0.5, and a distilled student's teacher in its own row."
    )
    rows = study_rows(records, data, Protocol(teacher_arch=arch))
    show_table(study_table(rows), hide_index=True)
    for index, row in enumerate(rows):
        if row["command"]:
            st.caption(f"To fill “{plain(row['setting'])}”:")
            command, start = st.columns([6, 1], vertical_alignment="center")
            command.code(row["command"], language="bash")
            if row["spec"] is not None:
                key = f"compare.study_start_{index}_btn"
                start_study_run_ui(row["spec"], records, start, key=key)


def start_study_run_ui(
    spec: RunSpec, records: Sequence[RunRecord], column: DeltaGenerator, key: str
) -> None:
    """Start, in the background and in `column`, the run that fills a study row; one at a time
    per row. The last try's error shows below (ImageNet weights offline, say)."""
    tries = [r for r in records if r.spec == spec]  # newest first
    if tries and tries[0].active:
        column.caption(f"{plain(tries[0].status)}: {plain(tries[0].run_id[-4:])}")
        return
    if tries and tries[0].status == "failed":
        error = tries[0].run_status.error or "no reason recorded"
        st.caption(f"The last try failed: {plain(error)}")
    if column.button("Start", key=key, help="Train this run in the background, as the command "
                     "would; the row fills when it finishes."):  # fmt: skip
        run_id = submit_ui(get_queue(), lambda: spec)
        if run_id:
            st.session_state[TOAST_KEY] = f"Queued {run_id}; it fills the row when it finishes."
            st.rerun()


def settings_ui(records: Sequence[RunRecord], titles: dict[str, str]) -> None:
    """The chosen runs' settings, one row each, those that tell them apart only unless asked;
    a teacher by its title where `titles` (run id -> title) knows it."""
    title, every_column = st.columns([4, 1], vertical_alignment="bottom")
    title.subheader("Settings that differ")
    every = every_column.toggle(
        "Every setting", key="compare.every_setting", persist_state="session",
        help="Also the settings these runs share.",
    )  # fmt: skip
    settings = {}
    for record in records:
        try:
            found = settings_of(record)
            if found.get("teacher") in titles:
                found["teacher"] = titles[found["teacher"]]
            settings[run_title(record)] = found
        except RunError as error:
            st.warning(f"{plain(run_title(record))}: {plain(error)}")
    names = differing_settings(settings, every=every)
    if len(settings) < 2 and not every:
        st.caption("Choose two runs or more to see what tells them apart.")
    elif not names:
        st.caption("These runs share every setting (seed included).")
    else:
        st.caption("As each run trained: what it is, then the recipe its folder recorded.")
        rows = [
            {"what": title, **{name: setting_text(values.get(name)) for name in names}}
            for title, values in settings.items()
        ]
        show_table(rows, hide_index=True, key="compare.settings_table")


def setting_text(value: Any) -> str | None:
    """A setting as the table shows it: numbers as short as they are exact; None stays empty."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def calibration_ui(records: Sequence[RunRecord]) -> None:
    """A student's reliability diagram and confusion matrix beside its teacher's."""
    evaluated = {r.run_id: r for r in records if read_evaluation(r.folder)}
    st.subheader("Calibration and confusion")
    if not evaluated:
        st.caption("Students get these when they finish (or with `python -m kdcore evaluate`).")
        return
    run_id = run_picker("Student", list(evaluated.values()), key="compare.evaluated")
    report = read_evaluation(evaluated[run_id].folder) or {}
    models = {"student": report.get("reliability", [])}
    if report.get("teacher_reliability"):
        models = {"teacher": report["teacher_reliability"], **models}
    st.caption(
        f"Final weights on {report.get('images', '?')} test images · ECE {report.get('ece', 0):.3f}"
        + (f" (teacher {report['teacher_ece']:.3f})" if "teacher_ece" in report else "")
    )
    st.plotly_chart(reliability_diagram(models), key="compare.reliability", width="stretch")
    classes = report.get("classes") or [str(k) for k in range(len(report.get("confusion", [])))]
    left, right = st.columns(2)
    if report.get("teacher_confusion"):
        left.plotly_chart(
            confusion_heatmap(report["teacher_confusion"], classes, "teacher"),
            key="compare.teacher_confusion",
            width="stretch",
        )
    right.plotly_chart(
        confusion_heatmap(report.get("confusion", []), classes, "student"),
        key="compare.student_confusion",
        width="stretch",
    )
    confusions = {"teacher": report["teacher_confusion"]} if report.get("teacher_confusion") else {}
    st.plotly_chart(
        per_class_accuracy(classes, {**confusions, "student": report.get("confusion", [])}),
        key="compare.per_class_chart",
        width="stretch",
    )


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


@st.fragment
def curves_ui(
    series: dict[str, list[dict[str, Any]]], colors: dict[str, str | None], distilled: list[str]
) -> None:
    """The curves with their smoothing and log-scale controls. A fragment: moving the slider
    redraws these charts only, not the tables and the other charts of the page."""
    smoothing_column, log_column = st.columns([4, 1], vertical_alignment="bottom")
    smoothing = smoothing_column.slider(
        "Smoothing", 0.0, 0.95, step=0.05, key="compare.smoothing", persist_state="session",
        help="An exponential moving average, as TensorBoard's; the raw curve stays faint.",
    )  # fmt: skip
    log_loss = log_column.toggle(
        "Log-scale losses", key="compare.log_loss", persist_state="session"
    )
    left, right = st.columns(2)
    left.plotly_chart(
        legend_below(learning_curves(series, "test_acc", smoothing, colors=colors)),
        key="compare.acc_chart",
        width="stretch",
    )
    right.plotly_chart(
        legend_below(
            learning_curves(series, "test_loss", smoothing, colors=colors, log_y=log_loss)
        ),
        key="compare.loss_chart",
        width="stretch",
    )
    if distilled:
        terms = {label: series[label] for label in distilled}
        figure = distillation_terms_figure(terms, smoothing, colors=colors, log_y=log_loss)
        st.plotly_chart(legend_below(figure), key="compare.terms_chart", width="stretch")


st.title("Compare runs")
queue = get_queue()
every_run = queue.runs()  # read once: the study rows want runs without an epoch too
records = [r for r in every_run if r.metrics]
if not records:
    st.info("No run has finished an epoch yet. Start one on the teacher or student page.")
    st.stop()

by_id = {r.run_id: r for r in records}
if "compare.ids" not in st.query_params:  # else the link's runs (Streamlit drops unknown ones)
    ids = st.session_state.get("compare.ids")
    kept = list(by_id)[:4] if ids is None else [rid for rid in ids if rid in by_id]
    set_widget_value("compare.ids", kept)
chosen = st.multiselect(
    "Runs",
    list(by_id),
    key="compare.ids",
    persist_state="session",
    bind="query-params",
    format_func=lambda rid: run_title(by_id[rid]),
)
colors = chart_colors(queue)
curves_ui(
    {run_title(by_id[rid]): list(by_id[rid].metrics) for rid in chosen},
    {run_title(by_id[rid]): colors.get(rid) for rid in chosen},
    distilled=[run_title(by_id[rid]) for rid in chosen if by_id[rid].spec.role == "distill"],
)

st.subheader("Runs side by side")
table = [summary_row(by_id[rid]) for rid in chosen]
alone = [r for r in records if r.spec.role == "student" and r.status == "finished"]
if alone:
    baseline_id = run_picker(
        "Gain over (a student alone, with its other seeds)", alone, key="compare.baseline",
        help="The gain is in points of final test accuracy, over the mean of the student-alone "
        "runs of the same data, epochs and subset as this one (one per seed).",
    )  # fmt: skip
    baseline = baseline_like(by_id[baseline_id], records)
    for row, rid in zip(table, chosen, strict=True):
        gain = baseline.gain(by_id[rid])
        row["gain (points)"] = round(100 * gain, 2) if gain is not None else None
    spread = f" ± {percent(baseline.std)}" if baseline.std is not None else ""
    st.caption(
        f"Baseline: {percent(baseline.mean)}{spread} % final test accuracy, mean of "
        f"{len(baseline.runs)} seed(s) ({', '.join(map(str, baseline.seeds))}). An empty gain: "
        "another data set, number of epochs or subset than the baseline's."
    )
show_table(bold_best(table, "final test acc (%)"), hide_index=True)
st.download_button(
    "Table (CSV)",
    to_csv(table),
    file_name="runs.csv",
    mime="text/csv",
    disabled=not table,
    key="compare.table_csv_btn",
)

settings_ui([by_id[rid] for rid in chosen], {r.run_id: run_title(r) for r in every_run})
study_ui(every_run)
calibration_ui([r for r in records if r.spec.role != "teacher"])
downloads_ui(records)
