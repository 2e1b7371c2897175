"""Training curves and the styling every chart shares: plain data in, go.Figure out (no
Streamlit, so tests can check them). One image's outputs are charted by `kdcore.plot_outputs`,
runs judged side by side by `kdcore.plot_evaluation`.

    colors = run_colors(all_run_ids)  # one colour per run, the same on every chart
    fig = learning_curves({"student": rows, "distilled T=4": rows_kd}, metric="test_acc",
                          colors={"student": colors[student_id], ...})
    fig = live_run_figure(metrics_rows, batch_losses, steps_per_epoch=390, epochs=10)

A metrics row is one epoch: {"epoch": 1, "train_loss", "train_acc", "test_loss", "test_acc",
"images_per_s", "elapsed_s", "eta_s"}, and for a distilled run "train_soft" (T^2 * KL),
"train_hard" (CE) and "train_agreement"; accuracies are fractions 0..1, drawn as percent.
A batch loss point is {"step": int, "loss": float}.

Hover text: accuracies in percent with 2 decimals, losses with 4 significant digits, and names
never cut short. An epoch axis has whole-number ticks, each label once.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdcore.batch_log import MAX_BATCH_POINTS

TEACHER_COLOR = "#4C78A8"  # blue
STUDENT_COLOR = "#F58518"  # orange
KL_COLOR = "#54A24B"  # green
TRAIN_COLOR = "#72B7B2"  # teal
TEST_COLOR = "#E45756"  # red
BATCH_LOSS_COLOR = "rgba(114, 183, 178, 0.45)"  # faint train colour
RUN_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#B279A2", "#9D755D", "#FF9DA6",
              "#72B7B2", "#C9A227", "#79706E")  # fmt: skip
RAW_OPACITY = 0.25  # the unsmoothed curve under a smoothed one, as TensorBoard draws it
ACC_HOVER = "%{y:.2f}%"
LOSS_HOVER = "%{y:.4g}"

METRIC_LABELS = {
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_acc": "train accuracy (%)",
    "test_loss": "test loss",
    "train_loss": "train loss",
}

Row = Mapping[str, Any]


def plot_text(text: object) -> str:
    """`text` as plotly shows it, character for character: a run label, a class name.

    Plotly reads names, titles, tick labels and hover text as HTML (<b>, <a href>, <br>) and
    decodes entities, so escaping is enough. `$` too: "$...$" is LaTeX where MathJax is loaded.

        plot_text("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    """
    return html.escape(str(text), quote=False).replace("$", "&#36;")


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average, as TensorBoard's smoothing slider computes it.

    ema([1, 3], 0.5) == [1.0, 2.333...]; smoothing 0 returns the values unchanged.
    Non-finite values pass through and do not disturb the average.
    """
    smoothed, last, count = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            smoothed.append(value)
            continue
        last = last * smoothing + (1 - smoothing) * value
        count += 1
        smoothed.append(last / (1 - smoothing**count))
    return smoothed


def run_color(key: str) -> str:
    """A colour from RUN_COLORS that depends on `key` (a run id) alone: the same in every process.

    run_color("20250101-120000-student-smallcnn-ab12") is always the same colour.
    """
    digest = hashlib.blake2b(str(key).encode(), digest_size=4).digest()
    return RUN_COLORS[int.from_bytes(digest, "big") % len(RUN_COLORS)]


def run_colors(run_ids: Sequence[str]) -> dict[str, str]:
    """Every run's colour, the same on every chart whichever runs are drawn.

    Pass every run id there is (ids begin with their creation time). Oldest first, a run takes
    `run_color(run_id)`, or the next colour of the palette that none of the runs created just
    before it (up to one palette's worth) has: so a new run never changes an older one's colour,
    and runs created one after another are told apart.
    """
    colours: dict[str, str] = {}
    recent: list[str] = []  # the colours of the last len(RUN_COLORS) - 1 runs
    for run_id in sorted(run_ids):
        colours[run_id] = _free_color(run_id, recent)
        recent = [*recent, colours[run_id]][1 - len(RUN_COLORS) :]
    return colours


def _free_color(key: str, taken: Collection[str]) -> str:
    """run_color(key), or the palette's next colour not in `taken` (all taken: run_color)."""
    first = RUN_COLORS.index(run_color(key))
    turns = [RUN_COLORS[(first + k) % len(RUN_COLORS)] for k in range(len(RUN_COLORS))]
    return next((colour for colour in turns if colour not in taken), turns[0])


def _label_colors(labels: Sequence[str], colors: Mapping[str, str | None] | None) -> dict:
    """Label -> colour: the one given, else run_color(label) or the next one the chart lacks."""
    chosen = {label: colour for label, colour in (colors or {}).items() if colour}
    taken = {chosen[label] for label in labels if label in chosen}
    for label in labels:
        if label not in chosen:
            chosen[label] = _free_color(label, taken)
            taken.add(chosen[label])
    return chosen


def epoch_axis(last_epoch: float) -> dict[str, Any]:
    """Axis settings for epochs up to `last_epoch`: whole-number ticks, never a label twice.

    Plotly's own ticks fall on halves with few epochs, and "d" then reads "1 2 2 3 3"; here the
    step is 1, 2 or 5 times a power of ten, at most about 10 ticks.
    """
    step = 1
    while last_epoch / step > 10:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return {"tickmode": "linear", "tick0": 0, "dtick": step, "tickformat": "d"}


def learning_curves(
    series: Mapping[str, Sequence[Row]],
    metric: str = "test_acc",
    smoothing: float = 0.0,
    title: str | None = None,
    colors: Mapping[str, str | None] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """One line per run label, x = epoch, y = the metric (accuracies in percent).

    learning_curves({"teacher": rows_t, "student": rows_s}, "test_loss", smoothing=0.6,
                    colors={"teacher": "#4C78A8"}, log_y=True)
    With smoothing, the raw curve stays faint underneath, and hover gives both values.
    `colors` maps a label to its colour (see run_colors); a label without one gets
    `run_color(label)`, or the next colour no other line of the chart has.
    """
    if metric not in METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRIC_LABELS)}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    scale = 100.0 if metric.endswith("_acc") else 1.0
    fig = go.Figure()
    last_epoch = 0
    palette = _label_colors(list(series), colors)
    for label, rows in series.items():
        epochs, values = _column(rows, metric)
        last_epoch = max([last_epoch, *epochs])
        color = palette[label]
        curve = Curve(plot_text(label), color, ACC_HOVER if scale != 1.0 else LOSS_HOVER)
        _add_curve(fig, curve, epochs, [v * scale for v in values], smoothing)
    fig.update_layout(title=plot_text(title or METRIC_LABELS[metric]), hovermode="x unified")
    fig.update_xaxes(title="epoch", **epoch_axis(last_epoch))
    fig.update_yaxes(title=METRIC_LABELS[metric], type="log" if log_y else None)
    if not last_epoch:  # a plain empty plot, not plotly's axes from -1 to 4
        fig.update_xaxes(range=[0, 1])
        fig.update_yaxes(range=[0, 100] if scale != 1.0 else [0, 1])
        _no_data(fig, "no epoch finished yet" if series else "no runs chosen")
    return tidy(fig)


@dataclass(frozen=True)
class Curve:
    """How one line is drawn: its name (already plot text), colour, hover number, dash, group."""

    name: str
    color: str
    hover: str = LOSS_HOVER  # a plotly number format for %{y}: ACC_HOVER or LOSS_HOVER
    dash: str = "solid"
    group: str | None = None  # legend group: one click hides every line of the group
    showlegend: bool = True


def _add_curve(
    fig: go.Figure,
    curve: Curve,
    x: Sequence[float],
    y: Sequence[float],
    smoothing: float,
    **where: int,
) -> None:
    """The curve, smoothed when asked, over its raw values drawn faint (hover shows both)."""
    group = curve.group or curve.name
    line = {"color": curve.color, "dash": curve.dash}
    common = {"x": list(x), "mode": "lines+markers", "legendgroup": group, "line": line}
    if smoothing <= 0:
        trace = go.Scatter(
            y=list(y), name=curve.name, hovertemplate=curve.hover, showlegend=curve.showlegend,
            **common,
        )  # fmt: skip
        fig.add_trace(trace, **where)
        return
    raw = go.Scatter(y=list(y), name=curve.name, opacity=RAW_OPACITY, showlegend=False,
                     hoverinfo="skip", **common)  # fmt: skip
    raw_value = curve.hover.replace("%{y", "%{customdata")
    smoothed = go.Scatter(
        y=ema(y, smoothing),
        customdata=list(y),
        name=curve.name,
        hovertemplate=f"{curve.hover} (raw {raw_value})",
        showlegend=curve.showlegend,
        **common,
    )
    fig.add_trace(raw, **where)
    fig.add_trace(smoothed, **where)


def _no_data(fig: go.Figure, text: str, col: int = 1) -> None:
    """A message in the middle of an empty plot (the `col`-th of a row of subplots)."""
    axis = str(col) if col > 1 else ""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=0.5,
        xref=f"x{axis} domain",
        yref=f"y{axis} domain",
        showarrow=False,
        font={"size": 14, "color": "#888"},
    )


def _column(rows: Sequence[Row], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) for rows that have a value for key, sorted by epoch."""
    present = sorted((row["epoch"], float(row[key])) for row in rows if row.get(key) is not None)
    return [epoch for epoch, _ in present], [value for _, value in present]


def live_run_figure(
    metrics: Sequence[Row],
    batch_losses: Sequence[Row],
    steps_per_epoch: int | None,
    epochs: int | None = None,
    log_loss: bool = False,
) -> go.Figure:
    """Left: per-batch and per-epoch losses; right: train/test accuracy per epoch.

    With steps_per_epoch the batch losses are placed in (fractional) epochs, so they share the
    x axis with the per-epoch points; without it they are drawn against the step, and the
    per-epoch losses are left out of the left panel (their x units would not match).
    `epochs`: how many the run will train; an empty panel spans them (0..100 % for accuracy).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy (%)"))
    span = [0, max(1, epochs or 1)]
    if not metrics and not batch_losses:
        fig.update_xaxes(title="epoch", range=span, **epoch_axis(span[1]))
        fig.update_yaxes(range=[0, 100], row=1, col=2)
        _no_data(fig, "no epoch finished yet", col=2)
        _no_data(fig, "waiting for the first batch", col=1)
        return tidy(fig)
    in_epochs = steps_per_epoch is not None or not batch_losses
    if batch_losses:
        points = _thin(batch_losses, MAX_BATCH_POINTS)
        x = [p["step"] / steps_per_epoch if steps_per_epoch else p["step"] for p in points]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[p["loss"] for p in points],
                name="batch loss",
                mode="lines",
                line={"color": BATCH_LOSS_COLOR, "width": 1},
                hovertemplate=LOSS_HOVER,
            ),
            row=1,
            col=1,
        )
    if in_epochs:
        _add_epoch_lines(fig, metrics, ("train_loss", "test_loss"), col=1, scale=1.0)
    _add_epoch_lines(fig, metrics, ("train_acc", "test_acc"), col=2, scale=100.0)
    last_epoch = max([0, *(row["epoch"] for row in metrics)])
    if in_epochs:
        newest = max(last_epoch, x[-1] if batch_losses else 0)
        fig.update_xaxes(title="epoch", hoverformat=".2f", row=1, col=1, **epoch_axis(newest))
    else:
        fig.update_xaxes(title="step", row=1, col=1)
    fig.update_xaxes(title="epoch", row=1, col=2, **epoch_axis(last_epoch or span[1]))
    fig.update_yaxes(type="log" if log_loss else None, row=1, col=1)
    if not any(row.get("test_acc") is not None for row in metrics):
        fig.update_xaxes(range=span, row=1, col=2)
        fig.update_yaxes(range=[0, 100], row=1, col=2)
        _no_data(fig, "no epoch finished yet", col=2)
    fig.update_layout(hovermode="x unified")
    return tidy(fig)


def _add_epoch_lines(
    fig: go.Figure, metrics: Sequence[Row], keys: tuple[str, str], col: int, scale: float
) -> None:
    for key, color in zip(keys, (TRAIN_COLOR, TEST_COLOR), strict=True):
        epochs, values = _column(metrics, key)
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=[v * scale for v in values],
                name=key.replace("_", " "),
                mode="lines+markers",
                line={"color": color},
                hovertemplate=ACC_HOVER if scale != 1.0 else LOSS_HOVER,
            ),
            row=1,
            col=col,
        )


def _thin(points: Sequence[Row], limit: int) -> list[Row]:
    """Every n-th point so at most about `limit` remain; the newest point is always kept."""
    if len(points) <= limit:
        return list(points)
    stride = math.ceil(len(points) / limit)
    thinned = list(points[::stride])
    if thinned[-1] is not points[-1]:
        thinned.append(points[-1])
    return thinned


TERM_LINES = (  # metrics key -> (what it is, dash)
    ("train_soft", "soft T²·KL", "solid"),
    ("train_hard", "hard CE", "dash"),
)
AGREEMENT_LINES = (  # metrics key -> (what it is, dash), in % of the training views
    ("train_agreement", "agreement", "solid"),  # the student's top class is the teacher's
    ("train_teacher_acc", "teacher right", "dot"),  # the teacher's is the label (newer runs only)
)


def distillation_terms_figure(
    series: Mapping[str, Sequence[Row]],
    smoothing: float = 0.0,
    colors: Mapping[str, str | None] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """Left: a distilled run's two loss terms per epoch, soft (T²·KL, solid) and hard (CE,
    dashed); right: how often its top class was the teacher's, while training (%, solid), and
    how often the teacher's was right on those same views (%, dotted): how good its targets were.

    distillation_terms_figure({"distilled T=4": rows}, smoothing=0.6, colors={...}, log_y=True)
    Runs without the terms (the student alone, a teacher) are left out. The loss the run
    minimised is alpha * soft + (1 - alpha) * hard.
    """
    fig = make_subplots(
        rows=1, cols=2,
        subplot_titles=("train loss terms: soft T²·KL (solid), hard CE (dashed)",
                        "agreement with the teacher (solid), teacher right (dotted)"),
    )  # fmt: skip
    last_epoch = 0
    palette = _label_colors(list(series), colors)
    for label, rows in series.items():
        if not any(row.get("train_soft") is not None for row in rows):
            continue
        name, color = plot_text(label), palette[label]
        for key, term, dash in TERM_LINES:
            epochs, values = _column(rows, key)
            last_epoch = max([last_epoch, *epochs])
            curve = Curve(f"{name} · {term}", color, LOSS_HOVER, dash, group=name)
            _add_curve(fig, curve, epochs, values, smoothing, row=1, col=1)
        for key, what, dash in AGREEMENT_LINES:
            epochs, values = _column(rows, key)
            if not epochs:
                continue
            curve = Curve(f"{name} · {what}", color, ACC_HOVER, dash, name, showlegend=False)
            _add_curve(fig, curve, epochs, [v * 100 for v in values], smoothing, row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(title="epoch", row=1, col=col, **epoch_axis(last_epoch))
    fig.update_yaxes(title="loss", type="log" if log_y else None, row=1, col=1)
    fig.update_yaxes(title="agreement (%)", row=1, col=2)
    if not last_epoch:
        for col in (1, 2):
            fig.update_xaxes(range=[0, 1], row=1, col=col)
            _no_data(fig, "no distilled run with an epoch", col=col)
    fig.update_layout(hovermode="x unified")
    return tidy(fig)


def as_floats(values: Any) -> list[float]:
    """A list of floats from a list, tuple or tensor."""
    return [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def tidy(fig: go.Figure) -> go.Figure:
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend_title_text="",
        hoverlabel={"namelength": -1},  # whole run names in hover labels (plotly cuts at 15)
    )
    return fig
