"""Figure builders: trace counts, units, smoothing, empty data, and labels shown as text."""

import html
import statistics

import pytest
import torch

from kdcore.plot_evaluation import (
    class_accuracies,
    confusion_heatmap,
    per_class_accuracy,
    reliability_diagram,
    sweep_heatmap,
)
from kdcore.plot_outputs import loss_terms_curves, softened_bars, temperature_curves, topk_bars
from kdcore.plots import (
    MAX_BATCH_POINTS,
    RUN_COLORS,
    STUDENT_COLOR,
    TEACHER_COLOR,
    distillation_terms_figure,
    ema,
    epoch_axis,
    learning_curves,
    live_run_figure,
    plot_text,
    run_color,
    run_colors,
)


def metrics_rows(accuracies: list[float]) -> list[dict]:
    return [
        {
            "epoch": epoch,
            "train_loss": 2.0 / epoch,
            "train_acc": min(acc + 0.05, 1.0),
            "test_loss": 2.2 / epoch,
            "test_acc": acc,
            "images_per_s": 5000.0,
            "elapsed_s": 10.0 * epoch,
            "eta_s": 10.0 * (len(accuracies) - epoch),
        }
        for epoch, acc in enumerate(accuracies, start=1)
    ]


def batch_points(count: int) -> list[dict]:
    return [{"step": step, "loss": 2.3 - step * 1e-4} for step in range(1, count + 1)]


def test_learning_curves_one_trace_per_run_in_percent():
    series = {"teacher": metrics_rows([0.5, 0.6, 0.7]), "student": metrics_rows([0.4, 0.45])}
    fig = learning_curves(series)
    assert [trace.name for trace in fig.data] == ["teacher", "student"]
    assert list(fig.data[0].x) == [1, 2, 3]
    assert list(fig.data[0].y) == pytest.approx([50, 60, 70])
    assert "%" in fig.layout.yaxis.title.text
    assert fig.data[0].line.color != fig.data[1].line.color


def test_learning_curves_sorts_epochs_and_skips_missing_values():
    rows = metrics_rows([0.5, 0.6, 0.7])
    rows[1]["test_acc"] = None
    fig = learning_curves({"run": list(reversed(rows))})
    assert list(fig.data[0].x) == [1, 3]


def test_loss_metrics_are_not_scaled():
    fig = learning_curves({"run": metrics_rows([0.5, 0.6])}, metric="train_loss")
    assert list(fig.data[0].y) == pytest.approx([2.0, 1.0])


def test_smoothing_reduces_variance_and_keeps_length():
    noisy = [0.5, 0.7, 0.4, 0.8, 0.45, 0.75, 0.5, 0.7]
    raw = learning_curves({"run": metrics_rows(noisy)}).data[0].y
    smooth = learning_curves({"run": metrics_rows(noisy)}, smoothing=0.6).data[-1].y
    assert len(smooth) == len(raw)
    assert statistics.pvariance(smooth) < statistics.pvariance(raw)
    assert smooth[0] == pytest.approx(raw[0])  # debiased: no pull towards zero


def test_ema_is_debiased_and_identity_at_zero():
    assert ema([1.0, 3.0], 0.5) == pytest.approx([1.0, 7 / 3])
    assert ema([1.0, 3.0, 2.0], 0.0) == [1.0, 3.0, 2.0]


@pytest.mark.parametrize("options", [{"metric": "f1"}, {"smoothing": 1.0}, {"smoothing": -0.1}])
def test_learning_curves_refuses_bad_options(options):
    with pytest.raises(ValueError):
        learning_curves({"run": metrics_rows([0.5])}, **options)


def test_learning_curves_with_no_runs_is_an_empty_figure():
    assert len(learning_curves({}).data) == 0


def test_live_figure_waits_for_first_batch():
    fig = live_run_figure([], [], steps_per_epoch=None)
    assert len(fig.data) == 0
    assert "waiting for the first batch" in [note.text for note in fig.layout.annotations]


def test_live_figure_in_epochs_with_steps_per_epoch():
    fig = live_run_figure(metrics_rows([0.5, 0.6]), batch_points(200), steps_per_epoch=100)
    assert [trace.name for trace in fig.data] == [
        "batch loss",
        "train loss",
        "test loss",
        "train acc",
        "test acc",
    ]
    assert fig.data[0].x[-1] == pytest.approx(2.0)  # step 200 of 100 per epoch
    assert list(fig.data[4].y) == pytest.approx([50, 60])
    assert fig.data[4].xaxis == "x2"


def test_live_figure_in_steps_without_steps_per_epoch():
    fig = live_run_figure(metrics_rows([0.5]), batch_points(50), steps_per_epoch=None)
    assert [trace.name for trace in fig.data] == ["batch loss", "train acc", "test acc"]
    assert fig.layout.xaxis.title.text == "step"


def test_live_figure_with_epochs_only_and_with_batches_only():
    assert len(live_run_figure(metrics_rows([0.5]), [], steps_per_epoch=None).data) == 4
    assert len(live_run_figure([], batch_points(3), steps_per_epoch=10).data) == 5


def test_live_figure_thins_long_batch_history_keeping_newest():
    fig = live_run_figure([], batch_points(10_000), steps_per_epoch=None)
    assert len(fig.data[0].x) <= MAX_BATCH_POINTS + 1
    assert fig.data[0].x[-1] == 10_000


def distilled_rows(count: int) -> list[dict]:
    rows = metrics_rows([0.3 + 0.05 * k for k in range(count)])
    for row in rows:
        epoch = row["epoch"]
        row.update(train_soft=4.0 / epoch, train_hard=2.0 / epoch, train_agreement=0.5 + epoch / 20)
    return rows


def epoch_axes(fig) -> list:
    axes = fig.layout.to_plotly_json().items()
    return [axis for name, axis in axes if name.startswith("xaxis") and "dtick" in axis]


@pytest.mark.parametrize(
    "build",
    [
        lambda: learning_curves({"run": metrics_rows([0.5, 0.6, 0.7])}),
        lambda: live_run_figure(metrics_rows([0.5, 0.6, 0.7]), batch_points(300), 100),
        lambda: live_run_figure(metrics_rows([0.5, 0.6, 0.7]), [], None),
        lambda: distillation_terms_figure({"run": distilled_rows(3)}),
    ],
    ids=["learning_curves", "live", "live_epochs_only", "distillation_terms"],
)
def test_few_epochs_get_one_tick_per_whole_epoch(build):
    """Plotly's own ticks fall on halves with 3 epochs, and "d" then reads "1 2 2 3 3"."""
    axes = epoch_axes(build())
    assert axes
    for axis in axes:
        assert axis["tickmode"] == "linear" and axis["dtick"] == 1 and axis["tickformat"] == "d"


@pytest.mark.parametrize("last_epoch", [1, 3, 10, 11, 37, 100, 250, 5000])
def test_epoch_ticks_stay_whole_and_few(last_epoch):
    step = epoch_axis(last_epoch)["dtick"]
    assert isinstance(step, int) and last_epoch / step <= 10
    assert str(step).rstrip("0") in ("1", "2", "5")


def test_smoothing_keeps_the_raw_curve_faint_underneath_and_hover_shows_both():
    noisy = metrics_rows([0.5, 0.7, 0.4, 0.8])
    fig = learning_curves({"run": noisy}, smoothing=0.6)
    raw, smooth = fig.data  # the raw curve first: drawn underneath
    assert list(raw.y) == pytest.approx([50, 70, 40, 80])
    assert raw.opacity < 0.5 and raw.showlegend is False and raw.hoverinfo == "skip"
    assert raw.line.color == smooth.line.color and raw.legendgroup == smooth.legendgroup
    assert list(smooth.customdata) == list(raw.y)
    assert smooth.hovertemplate == "%{y:.2f}% (raw %{customdata:.2f}%)"
    assert len(learning_curves({"run": noisy}).data) == 1  # no smoothing, no second curve


def test_hover_gives_percent_with_2_decimals_losses_with_4_digits_and_whole_names():
    series = {"distilled T=4 α=0.5 · 81.2% · ab12": metrics_rows([0.5, 0.6])}
    assert learning_curves(series, "test_acc").data[0].hovertemplate == "%{y:.2f}%"
    assert learning_curves(series, "test_loss").data[0].hovertemplate == "%{y:.4g}"
    live = live_run_figure(metrics_rows([0.5]), batch_points(20), steps_per_epoch=10)
    assert [trace.hovertemplate for trace in live.data] == ["%{y:.4g}"] * 3 + ["%{y:.2f}%"] * 2
    figures = [learning_curves(series), live, distillation_terms_figure({"r": distilled_rows(2)}),
               per_class_accuracy(["cat"], {"student": [[1]]})]  # fmt: skip
    for fig in figures:
        assert fig.layout.hoverlabel.namelength == -1  # plotly cuts names at 15 characters


def test_a_run_keeps_its_colour_whichever_runs_are_drawn_beside_it():
    ids = [f"20250101-1200{k:02d}-student-smallcnn-{k:04x}" for k in range(12)]
    colours = run_colors(ids)
    assert set(colours.values()) <= set(RUN_COLORS)
    # a run's colour depends on the runs made before it, never on which runs a chart shows
    assert run_colors(ids[:5]) == {i: colours[i] for i in ids[:5]}  # newer runs change nothing
    assert len({colours[i] for i in ids[:10]}) == 10  # runs made one after another differ
    assert run_color(ids[0]) == run_color(ids[0]) and run_color(ids[0]) in RUN_COLORS
    chosen = {"a": "#000001", "b": "#000002"}
    both = learning_curves({"a": metrics_rows([0.5]), "b": metrics_rows([0.6])}, colors=chosen)
    alone = learning_curves({"b": metrics_rows([0.6])}, colors=chosen)
    assert [t.line.color for t in both.data] == ["#000001", "#000002"]
    assert alone.data[0].line.color == "#000002"
    many = learning_curves({f"run {k}": metrics_rows([0.5]) for k in range(10)})
    assert len({trace.line.color for trace in many.data}) == 10  # no colour given: all differ
    clash = run_color("b")  # a given colour is kept; a label without one steps aside
    mixed = learning_curves(
        {"a": metrics_rows([0.5]), "b": metrics_rows([0.6])}, colors={"a": clash}
    )
    assert mixed.data[0].line.color == clash != mixed.data[1].line.color


def test_accuracy_panel_before_the_first_epoch_says_so_on_a_fixed_range():
    fig = live_run_figure([], batch_points(30), steps_per_epoch=100, epochs=10)
    notes = {note.text: note for note in fig.layout.annotations}
    assert notes["no epoch finished yet"].xref == "x2 domain"
    assert list(fig.layout.xaxis2.range) == [0, 10] and list(fig.layout.yaxis2.range) == [0, 100]
    waiting = live_run_figure([], [], steps_per_epoch=None, epochs=5)
    assert {"waiting for the first batch", "no epoch finished yet"} <= {
        note.text for note in waiting.layout.annotations
    }
    assert list(waiting.layout.xaxis2.range) == [0, 5]
    started = live_run_figure(metrics_rows([0.5]), [], None, epochs=10)
    assert started.layout.xaxis2.range is None  # data: plotly fits it
    empty = learning_curves({"run": []})
    assert "no epoch finished yet" in empty.layout.annotations[0].text
    assert list(empty.layout.xaxis.range) == [0, 1]


def test_losses_can_be_drawn_on_a_log_scale():
    series = {"run": metrics_rows([0.5, 0.6])}
    assert learning_curves(series, "test_loss", log_y=True).layout.yaxis.type == "log"
    assert learning_curves(series, "test_loss").layout.yaxis.type is None
    live = live_run_figure(metrics_rows([0.5]), batch_points(20), 10, log_loss=True)
    assert live.layout.yaxis.type == "log" and live.layout.yaxis2.type is None
    terms = distillation_terms_figure({"run": distilled_rows(2)}, log_y=True)
    assert terms.layout.yaxis.type == "log" and terms.layout.yaxis2.type is None


def test_distillation_terms_draw_soft_hard_and_agreement_of_distilled_runs_only():
    series = {"distilled": distilled_rows(3), "alone": metrics_rows([0.5, 0.6])}
    fig = distillation_terms_figure(series, colors={"distilled": "#123456"})
    names = [trace.name for trace in fig.data]
    assert names == ["distilled · soft T²·KL", "distilled · hard CE", "distilled · agreement"]
    soft, hard, agreement = fig.data
    assert list(soft.y) == pytest.approx([4.0, 2.0, 4 / 3])
    assert list(hard.y) == pytest.approx([2.0, 1.0, 2 / 3]) and hard.line.dash == "dash"
    assert list(agreement.y) == pytest.approx([55, 60, 65]) and agreement.xaxis == "x2"
    assert {trace.line.color for trace in fig.data} == {"#123456"}
    assert len({trace.legendgroup for trace in fig.data}) == 1  # one click hides the run
    smoothed = distillation_terms_figure(series, smoothing=0.5)
    assert len(smoothed.data) == 6 and smoothed.data[0].opacity < 0.5
    none = distillation_terms_figure({"alone": metrics_rows([0.5])})
    assert not none.data and "no distilled run" in none.layout.annotations[-1].text


def test_the_teachers_accuracy_on_the_training_views_is_dotted_beside_the_agreement():
    rows = distilled_rows(2)
    for row, teacher_acc in zip(rows, (0.9, 0.95), strict=True):
        row["train_teacher_acc"] = teacher_acc
    fig = distillation_terms_figure({"distilled": rows})
    teacher_right = fig.data[-1]
    assert teacher_right.name == "distilled · teacher right"
    assert list(teacher_right.y) == pytest.approx([90, 95])
    assert teacher_right.line.dash == "dot" and teacher_right.xaxis == "x2"
    assert teacher_right.legendgroup == fig.data[0].legendgroup


def test_per_class_accuracy_from_confusion_matrices_teacher_beside_student():
    assert class_accuracies([[3, 1], [0, 2], [0, 0]]) == [0.75, 1.0, None]
    fig = per_class_accuracy(
        ["cat", "dog"], {"teacher": [[4, 0], [1, 3]], "student": [[3, 1], [0, 2]]}
    )
    teacher, student = fig.data
    assert list(teacher.y) == [100.0, 75.0] and list(student.y) == [75.0, 100.0]
    assert teacher.marker.color == TEACHER_COLOR and student.marker.color == STUDENT_COLOR
    assert list(student.x) == ["cat", "dog"] and fig.layout.barmode == "group"
    assert list(fig.layout.yaxis.range) == [0, 100]


def test_softened_bars_groups_teacher_and_student():
    names = ["cat", "dog", "ship"]
    fig = softened_bars(names, torch.tensor([0.7, 0.2, 0.1]), [0.5, 0.3, 0.2], temperature=4.0)
    assert [trace.name for trace in fig.data] == ["teacher", "student"]
    assert fig.data[0].marker.color == TEACHER_COLOR and fig.data[1].marker.color == STUDENT_COLOR
    assert list(fig.data[0].y) == pytest.approx([0.7, 0.2, 0.1])
    assert fig.layout.barmode == "group" and list(fig.layout.yaxis.range) == [0, 1]
    assert "T = 4" in fig.layout.title.text
    assert len(softened_bars(names, [0.7, 0.2, 0.1], None, 1.0).data) == 1


def test_temperature_curves_mark_current_temperature():
    sweep = {
        "temperature": [1.0, 2.0, 4.0],
        "teacher_entropy": [0.3, 0.6, 0.9],
        "student_entropy": [0.5, 0.8, 1.0],
        "kl": [0.2, 0.1, 0.05],
    }
    fig = temperature_curves(sweep, current_temperature=2.0)
    assert len(fig.data) == 3
    assert [shape.x0 for shape in fig.layout.shapes] == [2.0]
    assert len(temperature_curves(sweep, None).layout.shapes) == 0


def test_temperature_curves_mark_the_students_training_temperature():
    sweep = {"temperature": [1.0, 2.0, 4.0], "kl": [0.2, 0.1, 0.05]}
    fig = temperature_curves(sweep, current_temperature=2.0, training_temperature=4.0)
    assert [shape.x0 for shape in fig.layout.shapes] == [2.0, 4.0]
    assert "student trained at T = 4" in [note.text for note in fig.layout.annotations]
    assert fig.layout.shapes[1].line.color == STUDENT_COLOR


def test_loss_terms_curves_name_each_term_with_its_weight_and_mark_both_temperatures():
    sweep = {"temperature": [1.0, 2.0, 4.0], "soft": [0.1, 0.3, 0.4], "hard": [0.2] * 3,
             "loss": [0.3, 0.5, 0.6]}  # fmt: skip
    fig = loss_terms_curves(sweep, 0.3, current_temperature=2.0, training_temperature=4.0)
    names = [trace.name for trace in fig.data]
    assert names == ["from the teacher: 0.3 × T²·KL", "from the labels: 0.7 × CE", "the loss"]
    assert list(fig.data[2].y) == [0.3, 0.5, 0.6] and "alpha = 0.3" in fig.layout.title.text
    assert [shape.x0 for shape in fig.layout.shapes] == [2.0, 4.0]
    assert len(loss_terms_curves(sweep, 0.3).layout.shapes) == 0


def test_topk_bars_horizontal_best_first():
    fig = topk_bars([("cat", 0.6), ("dog", 0.3), ("ship", 0.1)], "teacher")
    assert len(fig.data) == 1 and fig.data[0].orientation == "h"
    assert list(fig.data[0].y) == ["cat", "dog", "ship"]
    assert fig.layout.yaxis.autorange == "reversed"
    assert topk_bars([], "empty").to_json()  # renders with no rows


def test_sweep_heatmap_colours_accuracy_by_gain_and_marks_each_cell_for_clicks():
    summary = {
        "baseline": {"test_acc_mean": 0.70, "test_acc_std": 0.01, "ece_mean": 0.05},
        "cells": [
            {"temperature": 1.0, "alpha": 0.5, "done": 2, "of": 2, "test_acc_mean": 0.72,
             "test_acc_std": 0.02, "gain": 0.02, "ece_mean": 0.04, "ece_std": None},
            {"temperature": 4.0, "alpha": 0.5, "done": 1, "of": 2, "test_acc_mean": 0.69,
             "test_acc_std": None, "gain": -0.01, "ece_mean": 0.09, "ece_std": None},
        ],
    }  # fmt: skip
    fig = sweep_heatmap(summary)
    heatmap, markers = fig.data
    assert [list(row) for row in heatmap.z] == [[pytest.approx(2.0)], [pytest.approx(-1.0)]]
    assert heatmap.zmid == 0.0 and list(heatmap.y) == ["T=1", "T=4"]
    assert heatmap.text[0][0] == "72.00 ± 2.00" and heatmap.text[1][0] == "69.00<br>1/2 done"
    assert [list(point) for point in markers.customdata] == [[1.0, 0.5], [4.0, 0.5]]
    assert "student alone 70.00 ± 1.00" in fig.layout.title.text
    ece = sweep_heatmap(summary, "ece").data[0]
    assert [list(row) for row in ece.z] == [[0.04], [0.09]] and ece.zmid is None


def test_a_sweep_compared_on_validation_colours_that_and_offers_no_test_accuracy():
    from kdcore.plot_evaluation import sweep_metrics

    summary = {
        "compared_on": "val_acc",
        "baseline": {"val_acc_mean": 0.60, "val_acc_std": None, "test_acc_mean": 0.61},
        "cells": [{"temperature": 2.0, "alpha": 0.5, "done": 1, "of": 1, "val_acc_mean": 0.63,
                   "val_acc_std": None, "test_acc_mean": 0.70, "gain": 0.03}],
    }  # fmt: skip
    assert sweep_metrics(summary) == ["val_acc", "agreement", "kl_teacher_student", "ece"]
    assert sweep_metrics({"cells": []})[0] == "test_acc"  # a summary from before: test accuracy
    fig = sweep_heatmap(summary, "val_acc")
    assert [list(row) for row in fig.data[0].z] == [[pytest.approx(3.0)]]
    assert fig.data[0].zmid == 0.0 and "validation accuracy" in fig.layout.title.text
    assert "student alone 60.00" in fig.layout.title.text
    summary |= {"evaluated_on": "validation"}  # agreement, KL and ECE read there too say so
    assert sweep_heatmap(summary, "ece").layout.title.text.startswith("validation expected")
    assert sweep_heatmap(summary, "val_acc").layout.title.text.startswith("validation accuracy")
    tested = {**summary, "evaluated_on": "test"}
    assert sweep_heatmap(tested, "agreement").layout.title.text.startswith("agreement with")


def test_confusion_heatmap_shows_counts_coloured_by_share_of_the_true_class():
    fig = confusion_heatmap([[3, 1], [0, 2]], ["cat", "dog"], "student")
    cells = fig.data[0]
    assert [list(row) for row in cells.z] == [[75.0, 25.0], [0.0, 100.0]]
    assert [list(row) for row in cells.text] == [["3", "1"], ["0", "2"]]
    assert list(cells.x) == ["cat", "dog"] and fig.layout.title.text == "student"


def test_reliability_diagram_draws_each_model_over_the_diagonal():
    rows = [{"confidence": 0.5, "accuracy": 0.4, "count": 3},
            {"confidence": 0.9, "accuracy": 0.95, "count": 7}]  # fmt: skip
    fig = reliability_diagram({"teacher": rows, "student": rows[:1]})
    assert [trace.name for trace in fig.data] == ["calibrated", "teacher", "student"]
    assert list(fig.data[1].x) == [50.0, 90.0] and list(fig.data[1].y) == [40.0, 95.0]


HOSTILE = '<a href="http://127.0.0.1:9/">x</a> <b>y</b> &amp; $z$ <br>'


def figure_strings(fig) -> list[str]:
    """Every string of a figure's traces and layout (its template aside)."""
    found, layout = [], fig.to_plotly_json()["layout"]
    layout.pop("template", None)

    def walk(value):
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk([fig.to_plotly_json()["data"], layout])
    return found


@pytest.mark.parametrize(
    "build",
    [
        lambda: learning_curves({HOSTILE: metrics_rows([0.5])}, title=HOSTILE),
        lambda: softened_bars([HOSTILE, "dog"], [0.7, 0.3], [0.6, 0.4], temperature=2.0),
        lambda: topk_bars([(HOSTILE, 0.6), ("dog", 0.4)], HOSTILE),
        lambda: confusion_heatmap([[1, 0], [0, 1]], [HOSTILE, "dog"], HOSTILE),
        lambda: reliability_diagram({HOSTILE: [{"confidence": 0.5, "accuracy": 0.5, "count": 1}]}),
        lambda: learning_curves({HOSTILE: metrics_rows([0.5, 0.6])}, smoothing=0.5),
        lambda: distillation_terms_figure({HOSTILE: distilled_rows(2)}, smoothing=0.5),
        lambda: per_class_accuracy([HOSTILE, "dog"], {HOSTILE: [[1, 0], [0, 1]]}),
    ],
    ids=[
        "learning_curves",
        "softened_bars",
        "topk_bars",
        "confusion_heatmap",
        "reliability",
        "smoothed_curves",
        "distillation_terms",
        "per_class_accuracy",
    ],  # fmt: skip
)
def test_labels_and_class_names_reach_plotly_as_text_not_html(build):
    """Legend names, tick labels, hover text and titles: plotly decodes entities, reads tags."""
    strings = figure_strings(build())
    assert not any("<" in text or "$" in text for text in strings), strings
    assert HOSTILE in [html.unescape(text) for text in strings]


def test_plot_text_escapes_html_and_leaves_ordinary_text():
    assert plot_text("<b>x</b> & $y$") == "&lt;b&gt;x&lt;/b&gt; &amp; &#36;y&#36;"
    for ordinary in ("distilled T=4 α=0.5 · 81.2% · ab12", 'this cell\'s "runs"'):
        assert plot_text(ordinary) == ordinary
