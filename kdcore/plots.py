"""Plotly figure builders: plain data in, go.Figure out (no Streamlit, so tests can check them).

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
    return _tidy(fig)


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
        return _tidy(fig)
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
    return _tidy(fig)


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


def softened_bars(
    class_names: Sequence[str],
    teacher_probs: Sequence[float],
    student_probs: Sequence[float] | None,
    temperature: float,
) -> go.Figure:
    """Grouped bars of teacher vs student probabilities (0..1) per class at temperature T.

    softened_bars(class_names, p_teacher, p_student, temperature=4.0)
    Pass student_probs=None to draw the teacher alone. Tensors are accepted.
    """
    fig = go.Figure()
    names = [plot_text(name) for name in class_names]
    bars = (("teacher", teacher_probs, TEACHER_COLOR), ("student", student_probs, STUDENT_COLOR))
    for label, probs, color in bars:
        if probs is not None:
            fig.add_trace(go.Bar(x=names, y=_floats(probs), name=label, marker_color=color))
    fig.update_layout(barmode="group", title=f"softened probabilities at T = {temperature:g}")
    fig.update_yaxes(title="probability", range=[0, 1])
    return _tidy(fig)


def temperature_curves(
    sweep: Mapping[str, Sequence[float]],
    current_temperature: float | None = None,
    training_temperature: float | None = None,
) -> go.Figure:
    """Teacher and student entropy and KL(teacher || student) as T moves; a line at current T,
    and one at the T the student was distilled at (`training_temperature`, None: trained alone).

    temperature_curves(temperature_sweep(t_logits, s_logits, temps), 2.0, training_temperature=4)
    """
    temperatures = list(sweep.get("temperature", []))
    fig = go.Figure()
    lines = (
        ("teacher_entropy", "teacher entropy", TEACHER_COLOR, "solid"),
        ("student_entropy", "student entropy", STUDENT_COLOR, "solid"),
        ("kl", "KL(teacher || student)", KL_COLOR, "dot"),
    )
    for key, label, color, dash in lines:
        if key in sweep:
            fig.add_trace(
                go.Scatter(
                    x=temperatures,
                    y=list(sweep[key]),
                    name=label,
                    mode="lines",
                    line={"color": color, "dash": dash},
                )
            )
    if current_temperature is not None:
        fig.add_vline(
            x=current_temperature,
            line_dash="dash",
            line_color="gray",
            annotation_text=f"T = {current_temperature:g}",
        )
    if training_temperature is not None:
        fig.add_vline(
            x=training_temperature,
            line_dash="dot",
            line_color=STUDENT_COLOR,
            annotation_text=f"student trained at T = {training_temperature:g}",
            annotation_position="top right",
            annotation_yshift=-18,  # under the current T's label when the two lines are close
            annotation_font_color=STUDENT_COLOR,
        )
    fig.update_layout(title="entropy and KL as the temperature changes", hovermode="x unified")
    fig.update_xaxes(title="temperature T")
    fig.update_yaxes(title="nats")
    return _tidy(fig)


def topk_bars(
    rows: Sequence[tuple[str, float]], title: str, color: str = TEACHER_COLOR
) -> go.Figure:
    """Small horizontal bar chart of (class, probability), best at the top.

    topk_bars(top_k(probs[0], class_names), "student", color=STUDENT_COLOR)
    """
    names = [plot_text(name) for name, _ in rows]
    probs = [float(p) for _, p in rows]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=names,
            orientation="h",
            marker_color=color,
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",
        )
    )
    fig.update_layout(title=plot_text(title), height=90 + 30 * max(len(rows), 1), showlegend=False)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    return _tidy(fig)


SWEEP_METRICS = {  # metric -> (label, in percent, higher is better)
    "test_acc": ("test accuracy (%)", True, True),
    "agreement": ("agreement with the teacher (%)", True, True),
    "kl_teacher_student": ("KL(teacher || student), nats", False, False),
    "ece": ("expected calibration error", False, False),
}


def sweep_heatmap(summary: Mapping[str, Any], metric: str = "test_acc") -> go.Figure:
    """T (rows) x alpha (columns); each cell says mean ± std over seeds and how many are done.

    For accuracy the colour is the gain over the student alone (red below, blue above); for the
    other metrics it is the metric itself, the better end blue. Each cell also carries a
    transparent marker with its (T, alpha) as customdata, so a click on it can be selected.
    """
    label, percent, higher_better = SWEEP_METRICS[metric]
    scale = 100.0 if percent else 1.0
    cells = summary["cells"]
    temperatures = sorted({cell["temperature"] for cell in cells})
    alphas = sorted({cell["alpha"] for cell in cells})
    at = {(cell["temperature"], cell["alpha"]): cell for cell in cells}
    z, text = [], []
    for temperature in temperatures:
        z_row, text_row = [], []
        for alpha in alphas:
            cell = at.get((temperature, alpha), {})
            mean, std = cell.get(f"{metric}_mean"), cell.get(f"{metric}_std")
            colour = cell.get("gain") if metric == "test_acc" else mean
            z_row.append(None if colour is None else colour * scale)
            text_row.append(_cell_text(mean, std, scale, cell))
        z.append(z_row)
        text.append(text_row)
    x = [f"α={alpha:g}" for alpha in alphas]
    y = [f"T={temperature:g}" for temperature in temperatures]
    diverging = metric == "test_acc"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            text=text,
            texttemplate="%{text}",
            hoverinfo="skip",  # the markers above carry the hover text, and take the clicks
            colorscale="RdBu" if diverging else ("Blues" if higher_better else "Blues_r"),
            zmid=0.0 if diverging else None,
            colorbar={"title": "gain over alone (points)" if diverging else label},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[label_x for label_x in x for _ in y],
            y=[label_y for _ in x for label_y in y],
            customdata=[[t, a] for a in alphas for t in temperatures],
            hovertext=[
                f"T={t:g}, α={a:g}: " + text[ti][ai].replace("<br>", ", ")
                for ai, a in enumerate(alphas)
                for ti, t in enumerate(temperatures)
            ],
            hoverinfo="text",
            mode="markers",
            marker={"size": 40, "opacity": 0.01, "symbol": "square"},
            showlegend=False,
        )
    )
    baseline = summary.get("baseline") or {}
    reference = baseline.get(f"{metric}_mean")
    title = label
    if reference is not None:
        spread = baseline.get(f"{metric}_std")
        title += f" · student alone {_number(reference, scale)}" + (
            f" ± {_number(spread, scale)}" if spread is not None else ""
        )
    fig.update_layout(title=title, xaxis_title="alpha", yaxis_title="temperature")
    return _tidy(fig)


def _cell_text(mean: float | None, std: float | None, scale: float, cell: Mapping) -> str:
    if mean is None:
        return f"{cell.get('done', 0)}/{cell.get('of', 0)} done" if cell else ""
    text = _number(mean, scale) + (f" ± {_number(std, scale)}" if std is not None else "")
    if cell.get("done", 0) < cell.get("of", 0):
        text += f"<br>{cell['done']}/{cell['of']} done"
    return text


def _number(value: float, scale: float) -> str:
    return f"{value * scale:.2f}" if scale != 1.0 else f"{value:.3f}"


def reliability_diagram(models: Mapping[str, Sequence[Row]]) -> go.Figure:
    """Accuracy against confidence per bin (from metrics.reliability), one line per model, over
    the diagonal a perfectly calibrated model would follow."""
    fig = go.Figure(
        go.Scatter(
            x=[0, 100],
            y=[0, 100],
            mode="lines",
            name="calibrated",
            line={"color": "#999", "dash": "dot"},
        )  # fmt: skip
    )
    for index, (name, rows) in enumerate(models.items()):
        fig.add_trace(
            go.Scatter(
                x=[row["confidence"] * 100 for row in rows],
                y=[row["accuracy"] * 100 for row in rows],
                text=[f"{row['count']} images" for row in rows],
                mode="lines+markers",
                name=plot_text(name),
                line={"color": (TEACHER_COLOR, STUDENT_COLOR, *RUN_COLORS)[index % 9]},
            )
        )
    fig.update_layout(title="reliability: accuracy against confidence")
    fig.update_xaxes(title="mean confidence in the bin (%)", range=[0, 100])
    fig.update_yaxes(title="accuracy in the bin (%)", range=[0, 100])
    return _tidy(fig)


def confusion_heatmap(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str):
    """Rows: the true class; columns: the predicted one; each row as a share of its images."""
    shares = [[count / max(1, sum(row)) * 100 for count in row] for row in matrix]
    names = [plot_text(name) for name in classes]
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=names,
            y=names,
            text=[[str(count) for count in row] for row in matrix],
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar={"title": "% of the class"},
        )
    )
    fig.update_layout(title=plot_text(title), xaxis_title="predicted", yaxis_title="true")
    fig.update_yaxes(autorange="reversed")
    return _tidy(fig)


TERM_LINES = (  # metrics key -> (what it is, dash)
    ("train_soft", "soft T²·KL", "solid"),
    ("train_hard", "hard CE", "dash"),
)


def distillation_terms_figure(
    series: Mapping[str, Sequence[Row]],
    smoothing: float = 0.0,
    colors: Mapping[str, str | None] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """Left: a distilled run's two loss terms per epoch, soft (T²·KL, solid) and hard (CE,
    dashed); right: how often its top class was the teacher's, while training (%).

    distillation_terms_figure({"distilled T=4": rows}, smoothing=0.6, colors={...}, log_y=True)
    Runs without the terms (the student alone, a teacher) are left out. The loss the run
    minimised is alpha * soft + (1 - alpha) * hard.
    """
    fig = make_subplots(
        rows=1, cols=2,
        subplot_titles=("train loss terms: soft T²·KL (solid), hard CE (dashed)",
                        "train agreement with the teacher (%)"),
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
        epochs, values = _column(rows, "train_agreement")
        curve = Curve(f"{name} · agreement", color, ACC_HOVER, group=name, showlegend=False)
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
    return _tidy(fig)


def class_accuracies(matrix: Sequence[Sequence[int]]) -> list[float | None]:
    """Each class's accuracy (0..1) from a confusion matrix (rows: true class; columns:
    predicted); None for a class with no images.

        class_accuracies([[3, 1], [0, 2]]) == [0.75, 1.0]
    """
    return [(row[index] / sum(row)) if sum(row) else None for index, row in enumerate(matrix)]


def per_class_accuracy(
    classes: Sequence[str], confusions: Mapping[str, Sequence[Sequence[int]]]
) -> go.Figure:
    """Grouped bars of test accuracy (%) per class, one colour per model (teacher, student).

    per_class_accuracy(report["classes"], {"teacher": report["teacher_confusion"],
                                           "student": report["confusion"]})
    """
    names = [plot_text(name) for name in classes]
    fig = go.Figure()
    palette = {"teacher": TEACHER_COLOR, "student": STUDENT_COLOR}
    for index, (model, matrix) in enumerate(confusions.items()):
        shares = [None if a is None else a * 100 for a in class_accuracies(matrix)]
        fig.add_trace(
            go.Bar(
                x=names,
                y=shares,
                name=plot_text(model),
                marker_color=palette.get(model, RUN_COLORS[index % len(RUN_COLORS)]),
                hovertemplate=ACC_HOVER,
            )
        )
    fig.update_layout(barmode="group", title="test accuracy per class", hovermode="x unified")
    fig.update_yaxes(title="accuracy (%)", range=[0, 100])
    return _tidy(fig)


def _floats(values: Any) -> list[float]:
    """A list of floats from a list, tuple or tensor."""
    return [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _tidy(fig: go.Figure) -> go.Figure:
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend_title_text="",
        hoverlabel={"namelength": -1},  # whole run names in hover labels (plotly cuts at 15)
    )
    return fig
