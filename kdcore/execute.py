"""Executing a run: its folder's config -> data, model, teacher -> `fit` -> metrics and weights.

The CLI and the dashboard's run manager both call `execute_run`; everything a run produces lands
in its folder (see `kdcore.runs`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kdcore.checkpoints import CheckpointError, load_model, save_checkpoint
from kdcore.data import ImageSet, load_split, source_fingerprint
from kdcore.engine import Callback, Distillation, FitResult, fit, pick_device
from kdcore.models import build_model, build_teacher
from kdcore.runs import (
    DEFAULT_ROOT,
    RunError,
    RunSpec,
    read_json,
    run_dir,
    teacher_checkpoint,
    write_status,
)
from kdcore.teacher_cache import TeacherOutputs, cache_dir_for


class RunRecorder(Callback):
    """Writes what the engine emits into the run folder: metrics, weights, status."""

    def __init__(self, folder: Path, model: torch.nn.Module, spec: RunSpec, classes: Sequence[str]):
        self.folder, self.model, self.spec, self.classes = folder, model, spec, tuple(classes)
        self.best_acc = -1.0
        self.epochs_done = 0

    def on_fit_start(self, info: dict[str, Any]) -> None:
        write_status(self.folder, "running", started_at=time.time(), **info)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        with open(self.folder / "metrics.jsonl", "a") as file:
            file.write(json.dumps(logs) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.epochs_done = epoch
        # best.pt is chosen on the validation split when the run holds one out
        chosen_on = "val_acc" if "val_acc" in logs else "test_acc"
        if logs[chosen_on] > self.best_acc:
            self.best_acc = logs[chosen_on]
            self.save("best", test_acc=logs["test_acc"], chosen_on=chosen_on)
        self.save("last", test_acc=logs["test_acc"])
        write_status(self.folder, "running", epochs_done=epoch)

    def save(self, which: str, **meta: Any) -> None:
        """Write `best.pt` or `last.pt`, with what rebuilds the run in its metadata."""
        meta = {
            "run_id": self.folder.name,
            "role": self.spec.role,
            "epoch": self.epochs_done,
            "spec": self.spec.to_dict(),
            **meta,
        }
        save_checkpoint(
            self.folder / f"{which}.pt",
            self.model,
            self.spec.model_arch,
            self.classes,
            meta,
            stem=self.spec.model_stem,
        )


def execute_run(
    run_id: str,
    root: Path = DEFAULT_ROOT,
    callbacks: Sequence[Callback] = (),
    stop_event: threading.Event | None = None,
    device: str = "auto",
) -> FitResult:
    """Train the run `run_id` (already created) to the end, recording everything in its folder.

    Failures are recorded as status "failed" with the error, then raised again.
    """
    folder = run_dir(run_id, root)
    spec = RunSpec.from_dict(read_json(folder / "config.json"))
    try:
        return _execute(spec, folder, root, callbacks, stop_event, pick_device(device))
    except BaseException as error:
        write_status(
            folder, "failed", error=f"{type(error).__name__}: {error}", ended_at=time.time()
        )
        raise


def _execute(spec, folder, root, callbacks, stop_event, device) -> FitResult:
    train, val = load_split(spec.data, "train").split_off(spec.val_split)
    train = train.subset(spec.train_subset, spec.seed)
    test = load_split(spec.data, "test")
    torch.manual_seed(spec.seed)
    model = _initial_model(spec, len(train.classes))
    distillation, teacher_outputs = _distillation(spec, train, root, device)
    recorder = RunRecorder(folder, model, spec, train.classes)
    result = fit(
        model,
        train,
        test,
        spec.train_config(),
        distillation=distillation,
        callbacks=[recorder, *callbacks],
        stop_event=stop_event,
        device=device,
        val=val,  # empty without --val-split: the engine then reports no val_acc
    )
    extra = {"teacher_cache": teacher_outputs.summary()} if teacher_outputs else {}
    if result.status == "stopped":
        recorder.save("last", stopped=True)
    write_status(
        folder,
        result.status,
        ended_at=time.time(),
        best_test_acc=result.best_test_acc,
        epochs_done=len(result.history),
        **extra,
    )
    return result


def _initial_model(spec: RunSpec, num_classes: int) -> torch.nn.Module:
    if spec.role == "teacher":
        return build_teacher(
            spec.model_arch, num_classes, spec.init, spec.weights_file, spec.model_stem
        )
    return build_model(spec.model_arch, num_classes)


def _distillation(
    spec: RunSpec, train: ImageSet, root: Path, device: torch.device
) -> tuple[Distillation | None, TeacherOutputs | None]:
    if spec.role != "distill":
        return None, None
    checkpoint = teacher_checkpoint(spec.teacher, root)
    try:
        teacher, _ = load_model(checkpoint, device)
    except CheckpointError as error:
        raise RunError(str(error)) from error
    held_out = f"-val{spec.val_split}" if spec.val_split else ""  # keys of earlier runs stay valid
    data_key = f"{source_fingerprint(spec.data)}{held_out}-n{len(train)}-seed{spec.seed}"
    outputs = TeacherOutputs(
        teacher, train.images, spec.seed, cache_dir_for(checkpoint, data_key), device=device
    )
    return Distillation(outputs, spec.temperature, spec.alpha), outputs
