"""Sweep T and alpha: start a grid of distillations, watch its heatmap fill in, open a cell."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
from typing import Any

import streamlit as st

from kdcore.plot_evaluation import (
    SWEEP_METRICS,
    sweep_heatmap,
    sweep_metric_label,
    sweep_metrics,
)
from kdcore.plots import learning_curves
from kdcore.runs import RunError
from kdcore.sweep import (
    SweepError,
    SweepSpec,
    evaluate_trials,
    list_sweeps,
    start_sweep,
    summarise,
)
from ui.context import TABLE_POLL_SECONDS, data_source, get_queue, init_state
from ui.runs_view import (
    EPOCHS_HELP,
    SUBSET_HELP,
    chart_colors,
    legend_below,
    name_input,
    percent,
    run_picker,
    run_title,
    show_table,
    to_csv,
    with_weights,
)
from ui.text import plain

ui.startup.through_app()

TEMPERATURES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)

init_state(
    {
        "sweep.temperatures": [1.0, 2.0, 4.0, 8.0],
        "sweep.alphas": [0.1, 0.5, 0.9],
        "sweep.seeds": 1,
        "sweep.epochs": 10,
        "sweep.subset": 0,
        "sweep.metric": "test_acc",
        "sweep.label": "",
        "sweep.cell": None,
    }
)


def sweep_settings_ui(teacher: str | None) -> SweepSpec | None:
    """The grid and the training settings; returns the spec when Start is pressed."""
    with st.form("sweep.form"):
        name = name_input(
            "sweep.label",
            "Your name for this sweep: it heads the sweep and each of its runs' titles.",
        )
        left, right = st.columns(2)
        temperatures = left.multiselect(
            "Temperatures T", TEMPERATURES, key="sweep.temperatures", persist_state="session"
        )
        alphas = right.multiselect(
            "alpha values", ALPHAS, key="sweep.alphas", persist_state="session"
        )
        seeds = left.number_input(
            "Seeds per cell", min_value=1, max_value=10, key="sweep.seeds", persist_state="session"
        )
        epochs = right.number_input(
            "Epochs",
            min_value=0,
            step=1,
            key="sweep.epochs",
            persist_state="session",
            help=EPOCHS_HELP,
        )
        subset = left.number_input(
            "Training images (0 = all)",
            min_value=0,
            step=500,
            key="sweep.subset",
            persist_state="session",
            help=SUBSET_HELP,
        )
        started = st.form_submit_button("Start the sweep", type="primary", disabled=not teacher)
    if not started or teacher is None:
        return None
    training = {"data": data_source(), "epochs": int(epochs), "train_subset": int(subset) or None}
    return SweepSpec(
        teacher=teacher,
        temperatures=tuple(sorted(temperatures)),
        alphas=tuple(sorted(alphas)),
        seeds=tuple(range(int(seeds))),
        training=training,
        label=name.strip(),
    )


def sweep_title(values: dict[str, Any]) -> str:
    spec = values["spec"]
    grid = f"T {', '.join(f'{t:g}' for t in spec['temperatures'])} × α "
    grid += ", ".join(f"{a:g}" for a in spec["alphas"])
    return f"{grid} · {len(spec['seeds'])} seed(s) · {len(values['trials'])} runs · {values['id']}"


def summary_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if summary["baseline"]:
        rows.append(_table_row("student alone", summary["baseline"], summary))
    for cell in summary["cells"]:
        name = f"T={cell['temperature']:g} α={cell['alpha']:g}"
        rows.append({**_table_row(name, cell, summary), "gain (points)": percent(cell["gain"])})
    return rows


def _table_row(name: str, cell: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"setting": name, "done": f"{cell['done']}/{cell['of']}"}
    for metric in sweep_metrics(summary):
        _, in_percent, _ = SWEEP_METRICS[metric]
        label = sweep_metric_label(summary, metric)
        for stat in ("mean", "std"):
            value = cell.get(f"{metric}_{stat}")
            if in_percent:
                value = percent(value)
            elif value is not None:
                value = round(value, 4)
            row[f"{label} {stat}"] = value
    return row


def sweep_view(values: dict[str, Any], polling: bool) -> None:
    """The heatmap, the cell's curves and the table; re-drawn while trials train."""
    queue = get_queue()
    spec, runs = SweepSpec.from_dict(values["spec"]), values["trials"]
    records = {}
    for key, run_id in runs.items():
        try:
            records[key] = queue.run(run_id)
        except RunError:  # a trial's folder was deleted: the cell shows it as not done
            continue
    active = sum(record.active for record in records.values())
    if polling and not active:
        st.rerun()  # the last trial ended: redraw once, without polling
    try:
        evaluate_trials(spec, runs, queue.root)  # baselines against the sweep's teacher, once
    except RunError as error:
        st.warning(f"Some trials could not be evaluated: {plain(error)}")
    summary = summarise(spec, runs, queue.root)
    finished = sum(record.status == "finished" for record in records.values())
    st.progress(
        finished / max(1, len(records)),
        text=f"{finished}/{len(records)} runs finished, {active} queued or training",
    )
    offered = sweep_metrics(summary)
    if st.session_state.get("sweep.metric") not in offered:  # a sweep compared on the other split
        st.session_state["sweep.metric"] = summary["compared_on"]
    metric = st.segmented_control(
        "Colour by",
        offered,
        format_func=lambda name: sweep_metric_label(summary, name),
        key="sweep.metric",
        persist_state="session",
    )
    event = st.plotly_chart(
        sweep_heatmap(summary, metric),
        key="sweep.heatmap",
        on_select="rerun",
        selection_mode="points",
        width="stretch",
    )
    cells = [(t, a) for t in spec.temperatures for a in spec.alphas]
    points = event.get("selection", {}).get("points", []) if event else []
    clicked = tuple(points[0]["customdata"]) if points and points[0].get("customdata") else None
    if clicked and clicked != st.session_state.get("sweep.clicked"):
        st.session_state["sweep.clicked"] = st.session_state["sweep.cell"] = clicked
    if st.session_state.get("sweep.cell") not in cells:
        st.session_state["sweep.cell"] = cells[0]
    chosen = st.selectbox(
        "Cell (or click one in the heatmap)",
        cells,
        key="sweep.cell",
        format_func=lambda cell: f"T={cell[0]:g}, α={cell[1]:g}",
    )
    temperature, alpha = chosen
    shown = [
        record
        for key, record in records.items()
        if key.startswith(f"T{temperature:g}-a{alpha:g}-") or key.startswith("alone-")
    ]
    series = {run_title(record): list(record.metrics) for record in shown}
    run_colors = chart_colors(queue)  # each run's colour on every page
    colors = {run_title(record): run_colors.get(record.run_id) for record in shown}
    st.plotly_chart(
        legend_below(
            learning_curves(
                series,
                summary["compared_on"],
                title="this cell's runs and the baseline",
                colors=colors,
            )
        ),
        key="sweep.cell_chart",
        width="stretch",
    )
    table = summary_table(summary)
    show_table(table, hide_index=True, key="sweep.table")
    st.download_button(
        "Table (CSV)", to_csv(table), file_name=f"{values['id']}.csv", mime="text/csv",
        key="sweep.csv_btn",
    )  # fmt: skip


st.title("Sweep T and alpha")
st.caption(
    "Every cell distils students at one temperature and alpha, one per seed; the student alone "
    "is trained on the same seeds as the reference. The teacher's outputs are computed once per "
    "seed and shared by every cell."
)
queue = get_queue()
teacher = run_picker(
    "Teacher", with_weights(queue.runs(), ["teacher"]), key="sweep.teacher",
    help="Finished teacher runs with weights.",
)  # fmt: skip
if teacher is None:
    st.info("No finished teacher yet: train one on the teacher page first.")
spec = sweep_settings_ui(teacher)
if spec is not None:
    try:
        sweep_id, runs = start_sweep(spec, queue.root)
        st.session_state["sweep.id"] = sweep_id
        st.success(f"Sweep {plain(sweep_id)}: {len(runs)} runs queued (finished ones are kept).")
        queue.tick()
    except (SweepError, RunError) as error:
        st.error(f"Not started: {plain(error)}")

sweeps = {values["id"]: values for values in list_sweeps(queue.root)}
if not sweeps:
    st.stop()
st.subheader("Sweep")
if st.session_state.get("sweep.id") not in sweeps:
    st.session_state["sweep.id"] = next(iter(sweeps))
sweep_id = st.selectbox(
    "Sweep shown below", list(sweeps), key="sweep.id", format_func=lambda i: sweep_title(sweeps[i])
)
values = sweeps[sweep_id]
polling = any(
    record.active for record in queue.runs() if record.run_id in values["trials"].values()
)
st.fragment(run_every=TABLE_POLL_SECONDS if polling else None)(sweep_view)(values, polling)
