"""The training loop learns, emits its events in order, stops cleanly and is reproducible."""

from __future__ import annotations

import dataclasses
import io
import math
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdcore.data import ImageSet
from kdcore.engine import (
    Callback,
    Distillation,
    DivergedError,
    TrainConfig,
    autocast_for,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    tta_logits,
)
from kdcore.losses import DEFAULT_ALPHA, DEFAULT_TEMPERATURE
from kdcore.models import SmallCNN

CPU = torch.device("cpu")
BATCH_KEYS = {"loss", "epoch", "batch", "batches"}
EPOCH_KEYS = {
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "images_per_s",
    "elapsed_s",
    "eta_s",
}
TIMING_KEYS = {"images_per_s", "elapsed_s", "eta_s", "epoch_s"}


class Recorder(Callback):
    """Keeps every event as (hook, args...); optionally sets `stop` after `stop_after` batches."""

    def __init__(self, stop: threading.Event | None = None, stop_after: int | None = None):
        self.events: list[tuple] = []
        self.stop, self.stop_after = stop, stop_after

    def on_fit_start(self, info):
        self.events.append(("fit_start", info))

    def on_phase(self, phase, done, total):
        self.events.append(("phase", phase, done, total))

    def on_batch_end(self, step, logs):
        self.events.append(("batch", step, logs))
        if self.stop is not None and step == self.stop_after:
            self.stop.set()

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch", epoch, logs))

    def on_fit_end(self, status, logs):
        self.events.append(("fit_end", status, logs))

    def hooks(self) -> list[str]:
        return [event[0] for event in self.events]


@pytest.fixture
def tiny(synthetic_train, synthetic_test) -> tuple[ImageSet, ImageSet]:
    return synthetic_train.subset(96, seed=0), synthetic_test.subset(40, seed=0)


def fresh_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN()


def test_smallcnn_learns_synthetic_data_well_above_chance(synthetic_train, synthetic_test):
    train, test = synthetic_train.subset(640, seed=0), synthetic_test.subset(300, seed=0)
    result = fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32), device=CPU)
    assert result.status == "finished" and len(result.history) == 2
    assert result.history[-1]["test_acc"] >= 0.5  # chance is 0.1
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_test_acc == max(row["test_acc"] for row in result.history)


def test_events_arrive_in_order_with_the_documented_keys(tiny):
    train, test = tiny
    recorder = Recorder()
    config = TrainConfig(epochs=2, batch_size=32)
    fit(fresh_model(), train, test, config, callbacks=[recorder], device=CPU)
    per_epoch = ["batch"] * 3 + ["epoch"]
    assert recorder.hooks() == ["fit_start", *per_epoch, *per_epoch, "fit_end"]

    info = recorder.events[0][1]
    assert info["steps_per_epoch"] == 3 and info["epochs"] == 2
    assert (info["train_size"], info["test_size"], info["device"]) == (96, 40, "cpu")

    batches = [event for event in recorder.events if event[0] == "batch"]
    assert [step for _, step, _ in batches] == list(range(1, 7))
    for index, (_, _, logs) in enumerate(batches):
        assert set(logs) >= BATCH_KEYS
        assert (logs["epoch"], logs["batch"], logs["batches"]) == (index // 3 + 1, index % 3 + 1, 3)
        assert logs["loss"] > 0

    epochs = [event for event in recorder.events if event[0] == "epoch"]
    assert [epoch for _, epoch, _ in epochs] == [1, 2]
    for _, epoch, logs in epochs:
        assert set(logs) >= EPOCH_KEYS and logs["epoch"] == epoch
        assert 0.0 <= logs["train_acc"] <= 1.0 and 0.0 <= logs["test_acc"] <= 1.0
        assert logs["images_per_s"] > 0 and logs["elapsed_s"] > 0
    assert epochs[-1][2]["eta_s"] == 0
    assert recorder.events[-1][1] == "finished"
    assert recorder.events[-1][2]["best_test_acc"] == max(logs["test_acc"] for _, _, logs in epochs)
    assert recorder.events[-1][2]["final_test_acc"] == epochs[-1][2]["test_acc"]
    assert "final_test_acc_tta" not in recorder.events[-1][2]  # no TTA asked for


def test_the_terminal_closes_on_the_last_epochs_accuracy_not_the_best_epochs():
    from kdcore.progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.on_fit_end("finished", {"best_test_acc": 0.9, "final_test_acc": 0.8875})
    bar.on_fit_end("finished", {"final_test_acc": 0.88, "final_test_acc_tta": 0.9028})
    bar.on_fit_end("stopped", {"best_test_acc": None, "final_test_acc": None})
    assert stream.getvalue().splitlines() == [
        "finished; last epoch's test accuracy 88.75%",
        "finished; last epoch's test accuracy 88.00%, 90.28% with test-time augmentation",
        "stopped",
    ]


def test_stop_event_stops_between_batches_and_keeps_history_consistent(tiny):
    train, test = tiny
    stop = threading.Event()
    recorder = Recorder(stop=stop, stop_after=4)  # epoch 1 is 3 batches; stop in epoch 2
    result = fit(fresh_model(), train, test, TrainConfig(epochs=3, batch_size=32),
                 callbacks=[recorder], stop_event=stop, device=CPU)  # fmt: skip
    assert result.status == "stopped"
    assert [row["epoch"] for row in result.history] == [1]
    assert recorder.hooks() == ["fit_start", "batch", "batch", "batch", "epoch", "batch", "fit_end"]
    first = result.history[0]["test_acc"]
    assert recorder.events[-1][1:] == ("stopped", {"best_test_acc": first, "final_test_acc": first})


def test_stop_before_the_first_batch_gives_no_history(tiny):
    train, test = tiny
    stop = threading.Event()
    stop.set()
    result = fit(fresh_model(), train, test, TrainConfig(epochs=1, batch_size=32),
                 stop_event=stop, device=CPU)  # fmt: skip
    assert result.status == "stopped" and result.history == []
    assert result.best_test_acc is None


def without_timings(history):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def test_same_seed_gives_identical_weights_and_metrics(tiny):
    train, test = tiny
    config = TrainConfig(epochs=2, batch_size=32, seed=5)
    first_model, second_model = fresh_model(), fresh_model()
    first = fit(first_model, train, test, config, device=CPU)
    second = fit(second_model, train, test, config, device=CPU)
    assert without_timings(first.history) == without_timings(second.history)
    for (name, a), b in zip(
        first_model.state_dict().items(), second_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_different_seed_gives_different_weights(tiny):
    train, test = tiny
    first_model, second_model = fresh_model(), fresh_model()
    fit(first_model, train, test, TrainConfig(epochs=1, batch_size=32, seed=1), device=CPU)
    fit(second_model, train, test, TrainConfig(epochs=1, batch_size=32, seed=2), device=CPU)
    assert not torch.equal(first_model.classifier.weight, second_model.classifier.weight)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "Epochs must be at least 1"),
        ({"batch_size": 0}, "Batch size must be at least 1"),
        ({"lr": 0.0}, "Learning rate must be greater than 0"),
        ({"optimizer": "adam"}, "Unknown optimiser 'adam'"),
        ({"schedule": "cosine"}, "Unknown schedule 'cosine'"),
        ({"warmup_fraction": 1.0}, r"Warm-up fraction must lie in \(0, 1\)"),
        ({"warmup_fraction": 0.0}, r"Warm-up fraction must lie in \(0, 1\)"),
        ({"crop_padding": -1}, r"Crop padding must lie in \[0, 16\]"),
        ({"crop_padding": 17}, r"Crop padding must lie in \[0, 16\]"),
        ({"crop_fill": "edge"}, "Unknown crop fill 'edge'; use zero or reflect"),
        ({"tta": "crops"}, "Unknown TTA 'crops'; use off, flip, flip\\+translate"),
    ],
)
def test_train_config_refuses_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_one_cycle_runs_to_its_last_step_with_a_ragged_last_batch(synthetic_train, synthetic_test):
    train, test = synthetic_train.subset(70, seed=0), synthetic_test.subset(20, seed=0)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.01)  # 3 steps per epoch, the last of 6
    recorder = Recorder()
    result = fit(fresh_model(), train, test, config, callbacks=[recorder], device=CPU)
    assert result.status == "finished" and len(result.history) == 3
    assert sum(1 for hook in recorder.hooks() if hook == "batch") == 9
    rates = [row["lr"] for row in result.history]
    assert max(rates) <= config.lr
    assert rates[-1] < rates[0] / 5  # annealed from near the peak after warm-up


@pytest.mark.parametrize("warmup", [0.1, 0.25, 0.3, 0.5])
def test_one_cycle_schedule_steps_through_every_short_run(warmup):
    # a warm-up of exactly one step (e.g. 4 steps at 0.25) once made OneCycleLR divide by zero
    weight = nn.Parameter(torch.zeros(1))
    for epochs in (1, 2, 3):
        for steps_per_epoch in range(1, 13):
            config = TrainConfig(epochs=epochs, warmup_fraction=warmup, lr=0.1)
            optimizer = torch.optim.SGD([weight], lr=config.lr)
            scheduler = build_scheduler(optimizer, config, steps_per_epoch)
            rates = []
            for _ in range(epochs * steps_per_epoch):
                rates.append(scheduler.get_last_lr()[0])
                optimizer.step()
                scheduler.step()
            assert max(rates) <= config.lr * (1 + 1e-9), (epochs, steps_per_epoch)


def test_crop_padding_reaches_the_views_and_the_crop(tiny, monkeypatch):
    import kdcore.engine as engine

    train, test = tiny
    seen, real = [], engine.train_batch

    def spy(images, views, dtype=torch.float32, pad=4, fill="zero"):
        seen.append((pad, int(views.offsets.max()), fill))
        return real(images, views, dtype, pad=pad, fill=fill)

    monkeypatch.setattr(engine, "train_batch", spy)
    config = TrainConfig(epochs=1, batch_size=32, crop_padding=2, crop_fill="reflect")
    fit(fresh_model(), train, test, config, device=CPU)
    assert {(pad, fill) for pad, _, fill in seen} == {(2, "reflect")}
    assert max(offset for _, offset, _ in seen) <= 4  # a crop origin within 2 * 2 pixels


class FastShifts(nn.Module):
    """Two parameters, one of which asks to learn 64x faster."""

    def __init__(self):
        super().__init__()
        self.weight, self.shift = nn.Parameter(torch.ones(3)), nn.Parameter(torch.zeros(3))

    def lr_scale(self, name):
        return 64.0 if name == "shift" else 1.0


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_models_lr_scales_give_faster_groups_with_the_same_decay_per_step(optimizer):
    config = TrainConfig(epochs=1, optimizer=optimizer, lr=0.01, weight_decay=0.004)
    built = build_optimizer(FastShifts(), config)
    assert [group["lr"] for group in built.param_groups] == [0.01, 0.64]
    for group in built.param_groups:
        assert group["lr"] * group["weight_decay"] == pytest.approx(0.01 * 0.004)
    scheduler = build_scheduler(built, config, steps_per_epoch=20)
    peaks = [0.0, 0.0]
    for _ in range(20):
        peaks = [max(p, g["lr"]) for p, g in zip(peaks, built.param_groups, strict=True)]
        built.step()
        scheduler.step()
    assert peaks == pytest.approx([0.01, 0.64])


def test_sgd_with_constant_schedule_keeps_its_learning_rate(tiny):
    train, test = tiny
    config = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", schedule="constant", lr=0.02)
    result = fit(fresh_model(), train, test, config, device=CPU)
    assert [row["lr"] for row in result.history] == [0.02, 0.02]


class FixedTeacher:
    """A TeacherTargets that returns the same logits each epoch, or None to mean 'stopped'."""

    def __init__(self, logits: torch.Tensor | None):
        self.logits, self.calls = logits, []

    def epoch_logits(self, epoch, stop_event, on_progress):
        self.calls.append(epoch)
        on_progress(1, 1)
        return self.logits


def test_distillation_reports_soft_and_hard_terms_and_asks_the_teacher_each_epoch(tiny):
    train, test = tiny
    teacher = FixedTeacher(F.one_hot(train.labels, 10).float() * 5)
    recorder = Recorder()
    fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32),
        distillation=Distillation(teacher, temperature=4.0, alpha=0.9),
        callbacks=[recorder], device=CPU)  # fmt: skip
    assert teacher.calls == [0, 1]
    assert ("phase", "teacher", 1, 1) in recorder.events
    for event in recorder.events:
        if event[0] == "batch":
            logs = event[2]
            assert {"soft", "hard", "agreement"} <= set(logs)
            assert logs["loss"] == pytest.approx(0.9 * logs["soft"] + 0.1 * logs["hard"], rel=1e-5)
    # the teacher's argmax is the label here, so agreement with it is the training accuracy
    for epoch, row in ((e[1], e[2]) for e in recorder.events if e[0] == "epoch"):
        batches = [e[2] for e in recorder.events if e[0] == "batch" and e[2]["epoch"] == epoch]
        mean_soft = sum(b["soft"] * 32 for b in batches[:-1]) + batches[-1]["soft"] * (
            len(train) - 32 * (len(batches) - 1)
        )
        assert row["train_soft"] == pytest.approx(mean_soft / len(train), rel=1e-6)
        assert row["train_agreement"] == pytest.approx(row["train_acc"], abs=1e-9)


def test_distillation_reports_how_often_the_teacher_is_right_on_the_training_views(tiny):
    train, test = tiny
    wrong = (train.labels + 1) % 10
    every_other = torch.arange(len(train)) % 2 == 0
    teacher = FixedTeacher(F.one_hot(torch.where(every_other, train.labels, wrong), 10).float())
    recorder = Recorder()
    result = fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32),
                 distillation=Distillation(teacher, temperature=2.0, alpha=0.5),
                 callbacks=[recorder], device=CPU)  # fmt: skip
    right_on_even = every_other.float().mean().item()
    assert [row["train_teacher_acc"] for row in result.history] == pytest.approx(
        [right_on_even] * 2, abs=1e-9
    )
    batches = [e[2] for e in recorder.events if e[0] == "batch"]
    assert all(0 <= b["teacher_acc"] <= 1 for b in batches)
    assert {b["teacher_acc"] for b in batches} != {right_on_even}  # read per batch, not once


def test_a_lone_student_reports_no_distillation_terms(tiny):
    train, test = tiny
    result = fit(fresh_model(), train, test, TrainConfig(epochs=1, batch_size=32), device=CPU)
    assert not {"train_soft", "train_hard", "train_agreement", "train_teacher_acc"} & set(
        result.history[0]
    )


def test_label_smoothing_reaches_the_hard_term_of_distillation(tiny):
    train, test = tiny
    teacher = FixedTeacher(torch.zeros(len(train), 10))
    rows = {}
    for smoothing in (0.0, 0.3):
        config = TrainConfig(epochs=1, batch_size=32, label_smoothing=smoothing)
        distillation = Distillation(teacher, temperature=2.0, alpha=0.5)
        rows[smoothing] = fit(fresh_model(), train, test, config, distillation=distillation,
                              device=CPU).history[0]  # fmt: skip
    assert rows[0.0]["train_hard"] != pytest.approx(rows[0.3]["train_hard"], rel=1e-3)


def test_teacher_stopped_mid_pass_stops_the_fit(tiny):
    train, test = tiny
    result = fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32),
                 distillation=Distillation(FixedTeacher(None)), device=CPU)  # fmt: skip
    assert result.status == "stopped" and result.history == []


def test_distillation_refuses_bad_settings():
    with pytest.raises(ValueError, match="Temperature"):
        Distillation(FixedTeacher(None), temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        Distillation(FixedTeacher(None), alpha=1.2)
    with pytest.raises(ValueError, match="at most 100"):
        Distillation(FixedTeacher(None), temperature=math.inf)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lr": math.inf}, "Learning rate must be at most 10"),
        ({"lr": 1e30}, "Learning rate must be at most 10"),
        ({"lr": math.nan}, "Learning rate must be greater than 0"),
        ({"weight_decay": math.inf}, "Weight decay must lie in \\[0, 1\\]"),
        ({"weight_decay": math.nan}, "Weight decay must lie in"),
        ({"momentum": 1.0}, "Momentum must lie in"),
    ],
)
def test_absurd_optimiser_settings_are_refused_with_the_range(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_a_loss_that_turns_nan_fails_the_fit_at_that_batch(synthetic_train, synthetic_test):
    model = SmallCNN(10)
    with torch.no_grad():
        model.classifier.bias.fill_(math.nan)  # every logit NaN: the first loss is NaN
    config = TrainConfig(epochs=2, batch_size=32)
    with pytest.raises(DivergedError, match="loss became nan at epoch 1, batch 1"):
        fit(model, synthetic_train.subset(64, 0), synthetic_test.subset(32, 0), config)


def test_numbers_read_in_groups_give_the_same_events_and_rows(tiny, monkeypatch):
    # on a GPU the engine copies a group of batches' numbers at once; the result must not change
    import kdcore.engine as engine

    train, test = tiny
    config = TrainConfig(epochs=2, batch_size=16)
    runs = []
    for every in (1, 4):
        monkeypatch.setattr(engine, "host_sync_every", lambda device, every=every: every)
        recorder = Recorder()
        result = fit(fresh_model(), train, test, config, callbacks=[recorder], device=CPU)
        batch_events = [event[1:] for event in recorder.events if event[0] == "batch"]
        rows = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in result.history]
        runs.append((batch_events, rows))
    assert runs[0] == runs[1]
    assert [step for step, _ in runs[0][0]] == list(range(1, 13))  # 6 batches an epoch, in order


def test_a_nan_in_a_group_of_batches_still_names_its_batch(
    synthetic_train, synthetic_test, monkeypatch
):
    import kdcore.engine as engine

    monkeypatch.setattr(engine, "host_sync_every", lambda device: 3)
    model = SmallCNN(10)
    with torch.no_grad():
        model.classifier.bias.fill_(math.nan)
    with pytest.raises(DivergedError, match="loss became nan at epoch 1, batch 1"):
        fit(
            model,
            synthetic_train.subset(64, 0),
            synthetic_test.subset(32, 0),
            TrainConfig(epochs=1, batch_size=16),
            device=CPU,
        )


def test_distillation_defaults_come_from_the_loss():
    distillation = Distillation(FixedTeacher(None))
    assert (distillation.temperature, distillation.alpha) == (DEFAULT_TEMPERATURE, DEFAULT_ALPHA)


class ConstantModel(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_evaluate_returns_mean_cross_entropy_and_accuracy(synthetic_test):
    test = synthetic_test.subset(250, seed=3)
    logits = torch.linspace(-1, 1, 10)
    result = evaluate(ConstantModel(logits.clone()), test, CPU, batch_size=64)
    expected_loss = F.cross_entropy(logits.expand(len(test), -1), test.labels).item()
    assert result["acc"] == pytest.approx((test.labels == 9).float().mean().item())
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_cpu_bf16_follows_the_hardware_and_can_be_turned_off(monkeypatch):
    from kdcore import engine

    engine.cpu_has_native_bf16.cache_clear()
    monkeypatch.setenv("KDCORE_CPU_BF16", "0")
    assert engine.cpu_has_native_bf16() is False
    with engine.autocast_for(CPU):
        assert not torch.is_autocast_enabled("cpu")
    engine.cpu_has_native_bf16.cache_clear()
    monkeypatch.delenv("KDCORE_CPU_BF16")
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert engine.cpu_has_native_bf16() is native
    with engine.autocast_for(CPU):
        assert torch.is_autocast_enabled("cpu") is native
        if native:
            assert SmallCNN()(torch.zeros(1, 3, 32, 32)).dtype == torch.bfloat16
    engine.cpu_has_native_bf16.cache_clear()


def test_val_rows_appear_only_with_a_validation_split(tiny):
    train, test = tiny
    config = TrainConfig(epochs=1, batch_size=32)
    plain = fit(fresh_model(), train, test, config, device=CPU).history[0]
    assert "val_acc" not in plain and "val_loss" not in plain
    held = fit(fresh_model(), train, test, config, device=CPU, val=test.subset(20)).history[0]
    assert 0.0 <= held["val_acc"] <= 1.0 and held["val_loss"] > 0


class KeepFirstEpoch(Callback):
    """Keeps the train state and the weights at the end of epoch 1, and stops the fit there."""

    def __init__(self, model: nn.Module, stop: threading.Event) -> None:
        self.model, self.stop, self.state, self.weights = model, stop, None, None

    def on_train_state(self, epoch, state):
        if epoch == 1:
            self.state = state
            self.weights = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.stop.set()


def test_lookahead_changes_the_fit_and_resumes_to_the_same_weights(tiny):
    train, test = tiny
    config = TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.05, lookahead=True)
    unbroken = fresh_model()
    fit(unbroken, train, test, config, device=CPU)
    plain = fresh_model()
    fit(plain, train, test, dataclasses.replace(config, lookahead=False), device=CPU)
    assert not torch.equal(unbroken.classifier.weight, plain.classifier.weight)

    stop = threading.Event()
    first = fresh_model()
    keep = KeepFirstEpoch(first, stop)
    assert fit(first, train, test, config, callbacks=[keep], stop_event=stop, device=CPU).status \
        == "stopped"  # fmt: skip
    assert set(keep.state["lookahead"]) >= {"classifier.weight"}
    resumed = fresh_model()
    resumed.load_state_dict(keep.weights)
    fit(resumed, train, test, config, resume=keep.state, device=CPU)
    for name, value in unbroken.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_alternate_flips_reach_the_views(tiny, monkeypatch):
    import kdcore.engine as engine

    train, test = tiny
    seen, real = [], engine.epoch_views

    def spy(*args, **kwargs):
        views = real(*args, **kwargs)
        seen.append(views.flips)
        return views

    monkeypatch.setattr(engine, "epoch_views", spy)
    fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32, flips="alternate"),
        device=CPU)  # fmt: skip
    assert torch.equal(seen[1], ~seen[0])


@pytest.mark.parametrize(
    "views", [{"crop_padding": 2}, {"flips": "alternate"}, {"crop_fill": "reflect"}]
)
def test_distillation_keeps_the_views_the_teacher_cache_holds(tiny, views):
    train, test = tiny
    teacher = FixedTeacher(F.one_hot(train.labels, 10).float())
    with pytest.raises(ValueError, match="study's views"):
        fit(fresh_model(), train, test, TrainConfig(epochs=1, **views),
            distillation=Distillation(teacher), device=CPU)  # fmt: skip


def test_an_unknown_flip_mode_is_refused_by_the_config():
    with pytest.raises(ValueError, match="Unknown flip mode 'often'"):
        TrainConfig(flips="often")


def test_tta_accuracy_averages_the_logits_of_each_image_and_its_mirror(synthetic_test):
    from kdcore.augment import normalize

    model, data = fresh_model().eval(), synthetic_test.subset(60, seed=0)
    logs = evaluate(model, data, CPU, batch_size=25, tta="flip")
    with torch.no_grad():
        images = normalize(data.images)
        averaged = model(images) + model(images.flip(3))
    expected = (averaged.argmax(1) == data.labels).float().mean().item()
    assert logs["acc_tta"] == pytest.approx(expected)
    assert "acc_tta" not in evaluate(model, data, CPU)


def test_translate_tta_is_airbenchs_average_of_mirrors_and_one_pixel_shifts(synthetic_test):
    from kdcore.augment import normalize

    model, data = fresh_model().eval(), synthetic_test.subset(60, seed=0)
    ours = tta_logits(model, data, CPU, 25, "flip+translate")
    with torch.no_grad():  # airbench's infer_mirror_translate, written out
        images = normalize(data.images)

        def mirror(inputs):  # in the precision evaluation uses (bf16 where the CPU has it)
            with autocast_for(CPU):
                return (model(inputs).float() + model(inputs.flip(3)).float()) / 2

        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        translated = [padded[:, :, 0:32, 0:32], padded[:, :, 2:34, 2:34]]
        expected = 0.5 * mirror(images) + 0.5 * torch.stack([mirror(x) for x in translated]).mean(0)
    torch.testing.assert_close(ours, expected, atol=1.5e-4, rtol=0)  # bf16, other batches
    logs = evaluate(model, data, CPU, batch_size=25, tta="flip+translate")
    assert logs["acc_tta"] == pytest.approx((expected.argmax(1) == data.labels).float().mean())


def test_settings_recorded_with_tta_on_or_off_read_as_flip_or_off():
    assert TrainConfig(tta=True).tta == "flip" and TrainConfig(tta=False).tta == "off"


def test_only_the_last_row_gets_tta_accuracies_and_only_when_asked(tiny):
    train, test = tiny
    val = test.subset(20, seed=1)
    plain = fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32), val=val,
                device=CPU)  # fmt: skip
    assert not {"test_acc_tta", "val_acc_tta"} & set(plain.history[-1])
    recorder = Recorder()
    asked = fit(fresh_model(), train, test, TrainConfig(epochs=2, batch_size=32, tta="flip"),
                val=val, callbacks=[recorder], device=CPU)  # fmt: skip
    first, last = asked.history
    assert recorder.events[-1][2]["final_test_acc_tta"] == last["test_acc_tta"]
    assert not {"test_acc_tta", "val_acc_tta"} & set(first)  # read once, after the last epoch
    assert 0 <= last["test_acc_tta"] <= 1 and 0 <= last["val_acc_tta"] <= 1
    assert last["test_acc"] == plain.history[-1]["test_acc"]  # the single-view figure is unchanged


def test_a_state_saved_without_lookahead_resumes_with_it(tiny):
    train, test = tiny
    stop = threading.Event()
    first = fresh_model()
    keep = KeepFirstEpoch(first, stop)
    plain = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05)
    fit(first, train, test, plain, callbacks=[keep], stop_event=stop, device=CPU)
    assert "lookahead" not in keep.state
    resumed = fresh_model()
    resumed.load_state_dict(keep.weights)
    with_lookahead = dataclasses.replace(plain, lookahead=True)
    result = fit(resumed, train, test, with_lookahead, resume=keep.state, device=CPU)
    assert result.status == "finished" and len(result.history) == 2


def test_a_compiled_fit_trains_as_the_plain_one_and_keeps_the_models_names(tiny, monkeypatch):
    from kdcore.engine import training_forward

    train, test = tiny  # 96 images: three batches of 32, so one compiled shape
    config = TrainConfig(epochs=2, batch_size=32, seed=3)
    plain_model, compiled_model = fresh_model(), fresh_model()
    plain = fit(plain_model, train, test, config, device=CPU)
    monkeypatch.setenv("KDCORE_COMPILE", "default")
    assert training_forward(compiled_model, CPU)._orig_mod is compiled_model
    compiled = fit(compiled_model, train, test, config, device=CPU)

    assert compiled.status == "finished" and len(compiled.history) == 2
    for plain_row, compiled_row in zip(plain.history, compiled.history, strict=True):
        for key in ("train_loss", "test_loss"):  # fused kernels sum in another order
            assert compiled_row[key] == pytest.approx(plain_row[key], rel=1e-3), key
    assert type(compiled_model) is SmallCNN
    plain_state, compiled_state = plain_model.state_dict(), compiled_model.state_dict()
    assert list(compiled_state) == list(plain_state)  # checkpoints load as before
    for name, weights in compiled_state.items():
        assert torch.allclose(weights.float(), plain_state[name].float(), atol=1e-3), name


def test_an_unknown_compile_mode_is_refused_before_training(tiny, monkeypatch):
    train, test = tiny
    monkeypatch.setenv("KDCORE_COMPILE", "fastest")
    recorder = Recorder()
    with pytest.raises(ValueError, match="KDCORE_COMPILE 'fastest'; use off, default"):
        fit(fresh_model(), train, test, TrainConfig(epochs=1, batch_size=32),
            callbacks=[recorder], device=CPU)  # fmt: skip
    assert recorder.events == []
