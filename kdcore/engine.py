"""The training loop: `fit` and `evaluate`. It emits events to callbacks and knows no UI.

One loop serves the three roles: a teacher or a lone student learns from labels (cross-entropy);
a distilled student also gets a `TeacherOutputs` and learns from the study's loss. Stop is
cooperative: `stop_event` is checked between batches and `fit` returns with status "stopped".
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.augment import (
    PAD,
    STUDY_VIEWS,
    check_fill,
    check_flip_mode,
    epoch_order,
    epoch_views,
    normalize,
    shifted_view,
    train_batch,
)
from kdcore.data import ImageSet
from kdcore.lookahead import Lookahead
from kdcore.losses import (
    DEFAULT_ALPHA,
    DEFAULT_TEMPERATURE,
    check_distillation_settings,
    distillation_terms,
)
from kdcore.muon import MuonSGD

OPTIMIZERS = ("adamw", "sgd", "muon")  # muon: Muon for conv filters, SGD for the rest
MAX_LR = 10.0  # far above any schedule's peak that trains; larger values are typos
SCHEDULES = ("onecycle", "constant")
TTA_MODES = ("off", "flip", "flip+translate")  # test-time augmentation (see tta_logits)
GPU_SYNC_EVERY = 20  # batches whose numbers a GPU keeps before one copy to the host
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # $KDCORE_COMPILE


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule of one fit; `lr` is the one-cycle schedule's peak learning rate."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 6e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    muon_lr: float = 0.015  # optimizer "muon": the conv filters' peak lr (kdcore.muon)
    muon_momentum: float = 0.95  # and their momentum, which the one-cycle schedule leaves alone
    schedule: str = "onecycle"
    warmup_fraction: float = 0.25
    label_smoothing: float = 0.0
    crop_padding: int = PAD  # the study's RandomCrop(32, padding=4); distillation keeps it
    crop_fill: str = "zero"  # or "reflect" (augment.crop_flip); distillation keeps "zero"
    flips: str = "random"  # or "alternate" (augment.epoch_views); distillation keeps "random"
    lookahead: bool = False  # pull the weights towards a slow copy (kdcore.lookahead)
    tta: str = "off"  # the last row also gets test_acc_tta with these views (TTA_MODES)
    seed: int = 0
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"Epochs must be at least 1 (got {self.epochs}).")
        if self.batch_size < 1:
            raise ValueError(f"Batch size must be at least 1 (got {self.batch_size}).")
        if not self.lr > 0:
            raise ValueError(f"Learning rate must be greater than 0 (got {self.lr}).")
        if not self.lr <= MAX_LR:
            raise ValueError(f"Learning rate must be at most {MAX_LR:g} (got {self.lr}).")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"Unknown optimiser {self.optimizer!r}; use {' or '.join(OPTIMIZERS)}."
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}; use {' or '.join(SCHEDULES)}.")
        if not 0 < self.warmup_fraction < 1:
            raise ValueError(f"Warm-up fraction must lie in (0, 1) (got {self.warmup_fraction}).")
        if not 0 <= self.weight_decay <= 1:
            raise ValueError(f"Weight decay must lie in [0, 1] (got {self.weight_decay}).")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"Momentum must lie in [0, 1) (got {self.momentum}).")
        if not 0 < self.muon_lr <= MAX_LR:
            raise ValueError(
                f"Muon's learning rate must lie in (0, {MAX_LR:g}] (got {self.muon_lr})."
            )
        if not 0 <= self.muon_momentum < 1:
            raise ValueError(f"Muon's momentum must lie in [0, 1) (got {self.muon_momentum}).")
        if not 0 <= self.crop_padding <= 16:
            raise ValueError(f"Crop padding must lie in [0, 16] (got {self.crop_padding}).")
        check_flip_mode(self.flips)
        check_fill(self.crop_fill)
        if isinstance(self.tta, bool):  # settings recorded when TTA was flips or nothing
            object.__setattr__(self, "tta", "flip" if self.tta else "off")
        if self.tta not in TTA_MODES:
            raise ValueError(f"Unknown TTA {self.tta!r}; use {', '.join(TTA_MODES)}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"Label smoothing must lie in [0, 1) (got {self.label_smoothing}).")


class DivergedError(ValueError):
    """The loss stopped being a finite number; training cannot go on."""


class Callback:
    """Subscribers override what they need; every hook gets plain numbers and strings."""

    def on_fit_start(self, info: dict[str, Any]) -> None: ...
    def on_phase(self, phase: str, done: int, total: int) -> None: ...
    def on_batch_end(self, step: int, logs: dict[str, float]) -> None: ...
    def on_train_state(self, epoch: int, state: dict[str, Any]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, status: str, logs: dict[str, Any]) -> None: ...


class TeacherTargets(Protocol):
    """Teacher logits for every image of an epoch's augmented views: (N, C) float32."""

    def epoch_logits(
        self, epoch: int, stop_event: threading.Event, on_progress: Callable[[int, int], None]
    ) -> torch.Tensor | None: ...


@dataclass(frozen=True)
class Distillation:
    """A teacher and the loss's T and alpha, checked here once rather than on every batch."""

    teacher: TeacherTargets
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        check_distillation_settings(self.temperature, self.alpha)


@dataclass
class FitResult:
    status: str  # "finished" | "stopped"
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_test_acc(self) -> float | None:
        return max((row["test_acc"] for row in self.history), default=None)


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceError(ValueError):
    """A device that does not exist here; the message says what does."""


def pick_device(preference: str = "auto") -> torch.device:
    """ "auto": CUDA when present, else the CPU; "cpu", "cuda" or "cuda:N" when it exists here."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise DeviceError(f"Unknown device {preference!r}; use {DEVICE_CHOICES}.") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"Device {preference!r} is not supported; use {DEVICE_CHOICES}.")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"Device {preference!r} asks for a GPU, but PyTorch sees none on this machine; "
                "use auto or cpu."
            )
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"Device {preference!r} does not exist: this machine has {count} GPU(s)."
            )
    return device


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, and on CPUs with native bf16 dot products; else plain float32.

    On a 2-core AVX512-BF16 CPU bf16 trains the SmallCNN about 1.6x faster than float32 (bench:
    4,138 against 2,628 img/s) at the same accuracy; on CPUs without it, bf16 is emulated and many
    times slower. `KDCORE_CPU_BF16=0` turns it off.
    """
    if runs_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def runs_bf16(device: torch.device) -> bool:
    """Whether training on `device` computes in bf16 (see autocast_for)."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions natively (AVX512-BF16 or AMX)."""
    if os.environ.get("KDCORE_CPU_BF16", "1") == "0":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compile_mode() -> str:
    """How `fit` compiles the model for its training steps: `$KDCORE_COMPILE`, "off" if unset.

    Any other mode is torch.compile's: "reduce-overhead" and "max-autotune" replay each step's
    kernels as CUDA graphs on a GPU, where a small model's steps wait on kernel launches. On the
    CPU compiling made the SmallCNN slower (see the README), so it stays off unless asked for.
    """
    mode = os.environ.get("KDCORE_COMPILE") or "off"
    if mode not in COMPILE_MODES:
        raise ValueError(f"Unknown KDCORE_COMPILE {mode!r}; use {', '.join(COMPILE_MODES)}.")
    return mode


def training_forward(
    model: nn.Module, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model itself, or its compiled form (see compile_mode) for the training steps.

    Evaluation keeps the plain model: its few large batches gain little, and CUDA graphs would
    overwrite one batch's logits with the next's. The model's weights and names stay its own.
    """
    mode = compile_mode()
    if mode == "off":
        return model
    compiled = torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)
    if device.type != "cuda" or mode == "default":
        return compiled

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are done with
        return compiled(inputs)

    return forward


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to `device` in channels_last (faster for these convs on both the CPU and CUDA)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 32x32 shapes: let cuDNN pick its kernels
    return model.to(device=device, memory_format=torch.channels_last)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: ImageSet,
    device: torch.device,
    batch_size: int = 1000,
    tta: str = "off",
) -> dict[str, float]:
    """Mean cross-entropy and accuracy (a fraction) on un-augmented images.

    With a `tta` mode other than "off", also `acc_tta`: the accuracy of `tta_logits`.
    """
    logits = predict_logits(model, data, device, batch_size)
    labels = data.labels.to(device)
    loss = F.cross_entropy(logits, labels, reduction="sum")
    correct = (logits.argmax(1) == labels).sum()
    logs = {"loss": loss.item() / len(data), "acc": correct.item() / len(data)}
    if tta != "off":
        averaged = tta_logits(model, data, device, batch_size, tta, plain=logits)
        logs["acc_tta"] = (averaged.argmax(1) == labels).sum().item() / len(data)
    return logs


def tta_logits(
    model: nn.Module,
    data: ImageSet,
    device: torch.device,
    batch_size: int,
    mode: str,
    plain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits averaged over test-time views, as airbench reads its accuracy: "flip", each image
    and its mirror; "flip+translate", half that and half the same for the image moved one pixel
    up-left and one down-right (reflected at the edge). `plain`: the un-augmented logits, if known.
    """
    if plain is None:
        plain = predict_logits(model, data, device, batch_size)
    flip = (plain + predict_logits(model, data, device, batch_size, mirrored=True)) / 2
    if mode == "flip":
        return flip
    shifted = [
        predict_logits(model, data, device, batch_size, shift=shift, mirrored=mirrored)
        for shift in (-1, 1)
        for mirrored in (False, True)
    ]
    return flip / 2 + torch.stack(shifted).mean(0) / 2


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    data: ImageSet,
    device: torch.device,
    batch_size: int = 1000,
    mirrored: bool = False,
    shift: int = 0,
) -> torch.Tensor:
    """The model's logits for every un-augmented image of `data` (or its view moved by `shift`
    pixels and mirrored: augment.shifted_view): (N, C) float32 on `device`."""
    model.eval()
    chunks = []
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device, non_blocking=True)
        if mirrored or shift:
            images = shifted_view(images, shift, mirrored)
        with autocast_for(device):
            chunks.append(model(normalize(images.contiguous(memory_format=torch.channels_last))))
    return torch.cat(chunks).float()


def fit(
    model: nn.Module,
    train: ImageSet,
    test: ImageSet,
    config: TrainConfig,
    *,
    distillation: Distillation | None = None,
    callbacks: Sequence[Callback] = (),
    stop_event: threading.Event | None = None,
    device: torch.device | None = None,
    val: ImageSet | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` for `config.epochs` epochs, evaluating on `test` after each one.

    With a `val` split held out of the training images, each epoch's row also has `val_loss` and
    `val_acc`: the numbers to choose settings and epochs on, leaving the test split untouched.

    After each epoch, `on_train_state` gets what continuing needs (optimiser, schedule and RNG
    states, the rows so far). Given back as `resume`, with the model's weights of that epoch,
    `fit` continues where it stopped and ends with the weights an unbroken fit gives.
    """
    views = (config.crop_padding, config.flips, config.crop_fill)
    if distillation is not None and views != STUDY_VIEWS:
        raise ValueError(
            f"Distillation reads the teacher's outputs for the study's views (crop padding {PAD}, "
            f"random flips, zero fill), not padding {config.crop_padding} with {config.flips} "
            f"flips and {config.crop_fill} fill."
        )
    device = device or pick_device()
    stop_event = stop_event or threading.Event()
    if resume is None and hasattr(model, "initialise_from"):
        model.initialise_from(_initialisation_images(train))
    model = prepare_model(model, device)
    forward = training_forward(model, device)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    lookahead = Lookahead(model, config.epochs * steps_per_epoch) if config.lookahead else None
    result, first_epoch, earlier_s = FitResult("finished"), 0, 0.0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if lookahead is not None and "lookahead" in resume:  # else: slow copy from these weights
            lookahead.load_state_dict(resume["lookahead"])
        torch.set_rng_state(resume["rng"])
        result.history = [dict(row) for row in resume["history"]]
        first_epoch = len(result.history)
        earlier_s = result.history[-1]["elapsed_s"] if result.history else 0.0
    images, labels = train.images.to(device), train.labels.to(device)
    emit = _Emitter(callbacks)
    emit(
        "on_fit_start",
        {
            "steps_per_epoch": steps_per_epoch,
            "epochs": config.epochs,
            "first_epoch": first_epoch + 1,
            "train_size": len(train),
            "test_size": len(test),
            "device": str(device),
        },
    )
    started = time.perf_counter() - earlier_s
    for epoch in range(first_epoch, config.epochs):
        epoch_started = time.perf_counter()
        teacher_logits = None
        if distillation is not None:
            teacher_logits = distillation.teacher.epoch_logits(
                epoch, stop_event, lambda done, total: emit("on_phase", "teacher", done, total)
            )
            if teacher_logits is None:
                result.status = "stopped"
                break
            teacher_logits = teacher_logits.to(device)
        step_context = _StepContext(
            model, forward, optimizer, scheduler, config, distillation, device, emit, lookahead
        )
        train_logs = step_context.run_epoch(images, labels, epoch, teacher_logits, stop_event)
        if train_logs is None:
            result.status = "stopped"
            break
        if lookahead is not None and epoch == config.epochs - 1:
            lookahead.finish()
        tta = config.tta if epoch == config.epochs - 1 else "off"  # costly: read it once
        test_logs = evaluate(model, test, device, config.eval_batch_size, tta)
        elapsed = time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            **train_logs,
            "test_loss": test_logs["loss"],
            "test_acc": test_logs["acc"],
            **({"test_acc_tta": test_logs["acc_tta"]} if tta != "off" else {}),
            **_val_logs(model, val, device, config.eval_batch_size, tta),
            "epoch_s": time.perf_counter() - epoch_started,
            "elapsed_s": elapsed,
            "eta_s": elapsed / (epoch + 1) * (config.epochs - epoch - 1),
        }
        result.history.append(row)
        emit(
            "on_train_state",
            epoch + 1,
            _train_state(optimizer, scheduler, result.history, lookahead),
        )
        emit("on_epoch_end", epoch + 1, row)
    emit("on_fit_end", result.status, _fit_end_logs(result))
    return result


def _fit_end_logs(result: FitResult) -> dict[str, float | None]:
    """The last epoch's test accuracy (and its TTA figure, when read), and the best epoch's."""
    last = result.history[-1] if result.history else {}
    return {
        "best_test_acc": result.best_test_acc,
        "final_test_acc": last.get("test_acc"),
        **({"final_test_acc_tta": last["test_acc_tta"]} if "test_acc_tta" in last else {}),
    }


def _initialisation_images(train: ImageSet, count: int = 5000) -> torch.Tensor:
    """Normalised training images spread over the whole split, for data-dependent inits."""
    step = max(1, len(train) // count)
    return normalize(train.images[::step][:count])


def _train_state(
    optimizer, scheduler, history: list[dict[str, float]], lookahead: Lookahead | None
) -> dict[str, Any]:
    """What `fit(resume=...)` needs besides the weights, on the CPU (tensors, numbers, lists)."""
    state = {
        "optimizer": _on_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "history": [dict(row) for row in history],
    }
    if lookahead is not None:
        state["lookahead"] = lookahead.state_dict()
    return state


def _on_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(item) for item in value)
    return value


def _val_logs(
    model: nn.Module, val: ImageSet | None, device: torch.device, batch_size: int, tta: str
) -> dict[str, float]:
    if val is None or len(val) == 0:
        return {}
    logs = evaluate(model, val, device, batch_size, tta)
    return {
        "val_loss": logs["loss"],
        "val_acc": logs["acc"],
        **({"val_acc_tta": logs["acc_tta"]} if tta != "off" else {}),
    }


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov), AdamW or Muon with SGD (`kdcore.muon`) over the trainable parameters, in
    one group per learning-rate scale.

    A model may have parameters learn faster than the rest (`model.lr_scale(name)`, e.g.
    CifarNet's BatchNorm shifts); their weight decay is divided by the same scale, so that every
    parameter decays by the same fraction a step.
    """
    lr_scale = getattr(model, "lr_scale", lambda name: 1.0)
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault(float(lr_scale(name)), []).append(parameter)
    param_groups = [
        {"params": params, "lr": config.lr * scale, "weight_decay": config.weight_decay / scale}
        for scale, params in sorted(groups.items())
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, momentum=config.momentum, nesterov=True)
    if config.optimizer == "muon":
        return _muon_for_filters(param_groups, config)
    return torch.optim.AdamW(param_groups)


def _muon_for_filters(param_groups: list[dict], config: TrainConfig) -> MuonSGD:
    """Every trainable conv filter (4-D) in a Muon group at `muon_lr` times its lr scale, without
    weight decay; the rest as SGD would take it. The SGD groups come first, so the logged lr
    stays `config.lr`'s. Newton-Schulz runs in bf16 where autocast does."""
    sgd_groups, muon_groups = [], []
    for group in param_groups:
        filters = [p for p in group["params"] if p.ndim == 4]
        others = [p for p in group["params"] if p.ndim != 4]
        scale = group["lr"] / config.lr
        if others:
            sgd_groups.append({**group, "params": others})
        if filters:
            muon_groups.append({
                "params": filters, "lr": config.muon_lr * scale, "weight_decay": 0.0,
                "orthogonal": True, "muon_momentum": config.muon_momentum,
            })  # fmt: skip
    device = param_groups[0]["params"][0].device if param_groups else torch.device("cpu")
    return MuonSGD(
        sgd_groups + muon_groups,
        momentum=config.momentum,
        matmul_dtype=torch.bfloat16 if runs_bf16(device) else torch.float32,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    total_steps = config.epochs * steps_per_epoch
    pct_start = config.warmup_fraction
    if pct_start * total_steps == 1:  # a one-step warm-up makes OneCycleLR divide by zero
        pct_start = 1.5 / total_steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=pct_start,
    )


def host_sync_every(device: torch.device) -> int:
    """Batches between copies of their numbers to the host: every batch on the CPU, where a copy
    costs nothing, GPU_SYNC_EVERY on a GPU."""
    return 1 if device.type == "cpu" else GPU_SYNC_EVERY


class _Emitter:
    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def __call__(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)


@dataclass
class _StepContext:
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its compiled form
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    distillation: Distillation | None
    device: torch.device
    emit: _Emitter
    lookahead: Lookahead | None = None

    def run_epoch(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        teacher_logits: torch.Tensor | None,
        stop_event: threading.Event,
    ) -> dict[str, float] | None:
        """One pass over the shuffled, augmented training set; None when stopped mid-way.

        A batch's numbers stay on the device until `sync_every` batches are pending: on a GPU a
        copy to the host waits for all queued work, so a copy per batch would idle the GPU.
        """
        self.model.train()
        seed, batches = self.config.seed, math.ceil(len(labels) / self.config.batch_size)
        pad, fill = self.config.crop_padding, self.config.crop_fill
        order = epoch_order(len(labels), seed, epoch).to(self.device)
        views = epoch_views(len(labels), seed, epoch, pad, self.config.flips).to(self.device)
        sync_every = host_sync_every(self.device)
        totals = _EpochTotals(epoch, batches, self.emit)
        started = time.perf_counter()
        for batch_index, indices in enumerate(order.split(self.config.batch_size)):
            if stop_event.is_set():
                return None
            inputs = train_batch(images[indices], views.select(indices), pad=pad, fill=fill)
            targets = labels[indices]
            teacher = None if teacher_logits is None else teacher_logits[indices]
            terms, logits = self._step(inputs, targets, teacher)
            if self.lookahead is not None:
                self.lookahead.after_step(epoch * batches + batch_index + 1)
            predicted = logits.argmax(1)
            terms["correct"] = (predicted == targets).sum()
            if teacher is not None:
                teacher_predicted = teacher.argmax(1)
                terms["agreement"] = (predicted == teacher_predicted).float().mean()
                # how good the soft targets are on the very views the student learns from
                terms["teacher_acc"] = (teacher_predicted == targets).float().mean()
            totals.add(batch_index, len(indices), terms)
            if len(totals.pending) >= sync_every:
                totals.flush()
        totals.flush()
        seconds = time.perf_counter() - started
        return {
            **totals.epoch_logs(),
            "images_per_s": totals.seen / seconds,
            "lr": self.scheduler.get_last_lr()[0],
        }

    def _step(
        self, inputs: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        with autocast_for(self.device):
            logits = self.forward(inputs).float()
        if teacher_logits is None:
            loss = F.cross_entropy(logits, targets, label_smoothing=self.config.label_smoothing)
            terms = {"loss": loss}
        else:
            d = self.distillation
            terms = distillation_terms(
                logits,
                teacher_logits,
                targets,
                d.temperature,
                d.alpha,
                label_smoothing=self.config.label_smoothing,
            )
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        self.scheduler.step()
        return {k: v.detach() for k, v in terms.items()}, logits.detach()


@dataclass
class _EpochTotals:
    """A training epoch's running sums, fed batch by batch and read from the device in groups."""

    epoch: int
    batches: int
    emit: _Emitter
    pending: list[tuple[int, int, dict[str, torch.Tensor]]] = field(default_factory=list)
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    term_sums: dict[str, float] = field(default_factory=dict)  # soft, hard, agreement, ...

    def add(self, batch_index: int, size: int, terms: dict[str, torch.Tensor]) -> None:
        self.pending.append((batch_index, size, terms))

    def flush(self) -> None:
        """One device-to-host copy for every pending batch, then their events in order."""
        if not self.pending:
            return
        names = list(self.pending[0][2])
        stacked = torch.stack(
            [
                torch.stack([terms[n].detach().float().reshape(()) for n in names])
                for _, _, terms in self.pending
            ]
        )
        for (batch_index, size, _), values in zip(self.pending, stacked.tolist(), strict=True):
            extra = dict(zip(names, values, strict=True))
            loss, batch_correct = extra.pop("loss"), extra.pop("correct")
            if not math.isfinite(loss):  # the weights are lost: stop before an epoch is saved
                raise DivergedError(
                    f"loss became {loss} at epoch {self.epoch + 1}, batch {batch_index + 1}; "
                    "try a lower learning rate"
                )
            self.loss_sum += loss * size
            self.correct += int(batch_correct)
            self.seen += size
            for name, value in extra.items():
                self.term_sums[name] = self.term_sums.get(name, 0.0) + value * size
            step = self.epoch * self.batches + batch_index + 1
            logs = {
                "loss": loss,
                "epoch": self.epoch + 1,
                "batch": batch_index + 1,
                "batches": self.batches,
                **extra,
            }
            self.emit("on_batch_end", step, logs)
        self.pending.clear()

    def epoch_logs(self) -> dict[str, float]:
        return {
            "train_loss": self.loss_sum / self.seen,
            "train_acc": self.correct / self.seen,
            **{f"train_{name}": total / self.seen for name, total in self.term_sums.items()},
        }
