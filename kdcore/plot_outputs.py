"""Charts of one image's outputs: softened probabilities, their entropy and KL over T, top-k.

fig = softened_bars(classes, teacher_probs, student_probs, temperature=4.0)
fig = temperature_curves({"temperature": [...], "teacher_entropy": [...], ...}, student_t=4)
fig = topk_bars([("cat", 0.71), ("dog", 0.2)], "teacher")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from kdcore.plots import (
    KL_COLOR,
    STUDENT_COLOR,
    TEACHER_COLOR,
    as_floats,
    plot_text,
    tidy,
)


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
            fig.add_trace(go.Bar(x=names, y=as_floats(probs), name=label, marker_color=color))
    fig.update_layout(barmode="group", title=f"softened probabilities at T = {temperature:g}")
    fig.update_yaxes(title="probability", range=[0, 1])
    return tidy(fig)


def temperature_curves(
    sweep: Mapping[str, Sequence[float]],
    current_temperature: float | None = None,
    training_temperature: float | None = None,
) -> go.Figure:
    """Teacher and student entropy and KL(teacher || student) as T moves; a line at current T,
    and one at the T the student was distilled at (`training_temperature`, None: trained alone).

    temperature_curves(temperature_sweep(t_logits, s_logits, temps), 2.0, training_temperature=4)
    """
    lines = (
        ("teacher_entropy", "teacher entropy", TEACHER_COLOR, "solid"),
        ("student_entropy", "student entropy", STUDENT_COLOR, "solid"),
        ("kl", "KL(teacher || student)", KL_COLOR, "dot"),
    )
    fig = _curves_over_temperature(sweep, lines, current_temperature, training_temperature)
    fig.update_layout(title="entropy and KL as the temperature changes", hovermode="x unified")
    fig.update_xaxes(title="temperature T")
    fig.update_yaxes(title="nats")
    return tidy(fig)


def loss_terms_curves(
    sweep: Mapping[str, Sequence[float]],
    alpha: float,
    current_temperature: float | None = None,
    training_temperature: float | None = None,
) -> go.Figure:
    """The loss's two weighted terms and their sum as T moves (`loss_terms_sweep`'s output), a
    line at the current T and one at the T the student was distilled at.

    loss_terms_curves(loss_terms_sweep(s, t, y, temps, alpha=0.5), 0.5, current_temperature=2)
    """
    lines = (
        ("soft", f"from the teacher: {alpha:g} × T²·KL", TEACHER_COLOR, "solid"),
        ("hard", f"from the labels: {1 - alpha:g} × CE", STUDENT_COLOR, "solid"),
        ("loss", "the loss", KL_COLOR, "dot"),
    )
    fig = _curves_over_temperature(sweep, lines, current_temperature, training_temperature)
    fig.update_layout(title=f"the loss's terms at alpha = {alpha:g}", hovermode="x unified")
    fig.update_xaxes(title="temperature T")
    fig.update_yaxes(title="loss, mean over the images")
    return tidy(fig)


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
    return tidy(fig)


def _curves_over_temperature(
    sweep: Mapping[str, Sequence[float]],
    lines: Sequence[tuple[str, str, str, str]],
    current: float | None,
    training: float | None,
) -> go.Figure:
    """One line per (key, name, colour, dash) that `sweep` holds, over `sweep["temperature"]`;
    a dashed line at the current T and a dotted one at the T the student was distilled at."""
    fig = go.Figure()
    for key, label, color, dash in lines:
        if key in sweep:
            fig.add_trace(
                go.Scatter(
                    x=list(sweep.get("temperature", [])),
                    y=list(sweep[key]),
                    name=label,
                    mode="lines",
                    line={"color": color, "dash": dash},
                )
            )
    if current is not None:
        fig.add_vline(
            x=current,
            line_dash="dash",
            line_color="gray",
            annotation_text=f"T = {current:g}",
        )
    if training is not None:
        fig.add_vline(
            x=training,
            line_dash="dot",
            line_color=STUDENT_COLOR,
            annotation_text=f"student trained at T = {training:g}",
            annotation_position="top right",
            annotation_yshift=-18,  # under the current T's label when the two lines are close
            annotation_font_color=STUDENT_COLOR,
        )
    return fig
