"""Charts that judge runs: the T x alpha sweep heatmap, reliability, confusion, per-class accuracy.

fig = sweep_heatmap(summary, metric="test_acc")
fig = reliability_diagram({"teacher": bins, "student": bins})
fig = per_class_accuracy(classes, {"teacher": matrix, "student": matrix})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from kdcore.plots import (
    ACC_HOVER,
    RUN_COLORS,
    STUDENT_COLOR,
    TEACHER_COLOR,
    Row,
    plot_text,
    tidy,
)

SWEEP_METRICS = {  # metric -> (label, in percent, higher is better)
    "test_acc": ("test accuracy (%)", True, True),
    "val_acc": ("validation accuracy (%)", True, True),
    "agreement": ("agreement with the teacher (%)", True, True),
    "kl_teacher_student": ("KL(teacher || student), nats", False, False),
    "ece": ("expected calibration error", False, False),
}


def sweep_metrics(summary: Mapping[str, Any]) -> list[str]:
    """What a sweep's heatmap and table offer: the accuracy it is compared on (validation when
    its trials hold a split out, and then not the test split's), and the agreement, KL and ECE
    that `evaluate` reads against the teacher (on the same split)."""
    compared_on = summary.get("compared_on", "test_acc")
    other = {"test_acc": "val_acc", "val_acc": "test_acc"}[compared_on]
    return [metric for metric in SWEEP_METRICS if metric != other]


def sweep_metric_label(summary: Mapping[str, Any], metric: str) -> str:
    """A metric's label in a sweep's heatmap and table; agreement, KL and ECE say when they are
    read on the validation split (`evaluated_on`)."""
    label = SWEEP_METRICS[metric][0]
    if metric in ("test_acc", "val_acc") or summary.get("evaluated_on") != "validation":
        return label
    return f"validation {label}"


def sweep_heatmap(summary: Mapping[str, Any], metric: str | None = None) -> go.Figure:
    """T (rows) x alpha (columns); each cell says mean ± std over seeds and how many are done.

    `metric` defaults to the accuracy the sweep is compared on (`compared_on`). For it the colour
    is the gain over the student alone (red below, blue above); for the other metrics it is the
    metric itself, the better end blue. Each cell also carries a
    transparent marker with its (T, alpha) as customdata, so a click on it can be selected.
    """
    compared_on = summary.get("compared_on", "test_acc")  # the accuracy the gains are on
    metric = metric or compared_on
    _, percent, higher_better = SWEEP_METRICS[metric]
    label = sweep_metric_label(summary, metric)
    diverging = metric == compared_on
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
            colour = cell.get("gain") if diverging else mean
            z_row.append(None if colour is None else colour * scale)
            text_row.append(_cell_text(mean, std, scale, cell))
        z.append(z_row)
        text.append(text_row)
    x = [f"α={alpha:g}" for alpha in alphas]
    y = [f"T={temperature:g}" for temperature in temperatures]
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
    return tidy(fig)


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
    return tidy(fig)


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
    return tidy(fig)


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
    return tidy(fig)
