"""Executing a run: its folder's config -> data, model, teacher -> `fit` -> metrics and weights.

`python -m kdcore execute RUN_ID` is how a run trains: the dashboard starts it as a process of
its own (`kdcore.scheduler`), the CLI's teacher, student and distill commands call `execute_run`
in-process. Everything a run produces lands in its folder (see `kdcore.runs`): the process keeps
status.json and batches.csv current, and stops at the next batch once `stop-requested` appears.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kdcore.batch_log import BATCH_LOG, BatchLogWriter, truncate_batch_log
from kdcore.checkpoints import CheckpointError, load_model, read_checkpoint, save_checkpoint
from kdcore.data import ImageSet, load_split, require_same_classes, source_fingerprint
from kdcore.engine import Callback, Distillation, FitResult, fit, pick_device
from kdcore.evaluation import evaluate_run
from kdcore.files import atomic_write_text
from kdcore.models import build_model, build_teacher
from kdcore.runs import (
    DEFAULT_ROOT,
    METRICS_FILE,
    STOP_FILE,
    RunError,
    RunSpec,
    check_teacher,
    check_training_size,
    load_run,
    read_json,
    recorded_train_config,
    run_dir,
    teacher_checkpoint,
)
from kdcore.status import (
    HEARTBEAT_SECONDS,
    RunStatus,
    StatusError,
    read_status,
    this_process,
    write_status,
)
from kdcore.teacher_cache import TeacherOutputs, cache_dir_for

STOP_CHECK_SECONDS = 0.2  # how often the stop-requested file is looked for
RESUMABLE = ("stopped", "interrupted", "failed")


class StopRequest:
    """The engine's stop event: set in-process (a signal, a test) or by the run's stop file."""

    def __init__(self, folder: Path, event: threading.Event | None = None) -> None:
        self.path = folder / STOP_FILE
        self.event = event or threading.Event()
        self._checked = 0.0

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        if not self.event.is_set() and time.monotonic() - self._checked >= STOP_CHECK_SECONDS:
            self._checked = time.monotonic()
            if self.path.exists():
                self.event.set()
        return self.event.is_set()


class StatusReporter(Callback):
    """Keeps status.json and batches.csv current: events update the status in memory, and a
    heartbeat thread writes it (and flushes the batch losses) about once a second."""

    def __init__(self, folder: Path, status: RunStatus, batch_size: int) -> None:
        self.folder, self.batch_size = folder, batch_size
        self.batches = BatchLogWriter(folder)
        self._status = status
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="kdcore-heartbeat", daemon=True)
        self._speed_mark: tuple[float, int] | None = None

    def start(self) -> None:
        self.write()
        self._thread.start()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._status = self._status.replace(**fields)

    def write(self) -> None:
        with self._lock:
            self._status = self._status.replace(heartbeat=time.time())
            write_status(self.folder, self._status)
        self.batches.flush()

    def end(self, state: str, **fields: Any) -> None:
        """The final status: the heartbeat stops, then one last write."""
        self._ended.set()
        if self._thread.is_alive():
            self._thread.join()
        self.update(state=state, phase=state, ended_at=time.time(), eta_s=None, **fields)
        self.write()

    def _beat(self) -> None:
        while not self._ended.wait(HEARTBEAT_SECONDS):
            self.write()

    def on_fit_start(self, info: dict[str, Any]) -> None:
        epochs, first = info["epochs"], info["first_epoch"]  # first > 1: a resumed run
        self.update(
            phase=f"epoch {first}/{epochs}",
            epoch=first,
            epochs=epochs,
            epochs_done=first - 1,
            total_steps=epochs * info["steps_per_epoch"],
        )

    def on_phase(self, phase: str, done: int, total: int) -> None:
        self.update(phase=f"{phase} outputs {done}/{total}")

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self.batches.add(step, int(logs["epoch"]), logs["loss"])
        with self._lock:
            status = self._status
        fields: dict[str, Any] = {
            "step": step,
            "epoch": int(logs["epoch"]),
            "phase": f"epoch {int(logs['epoch'])}/{status.epochs}",
        }
        now = time.monotonic()
        if self._speed_mark is None or step < self._speed_mark[1]:
            self._speed_mark = (now, step)
        elif now - self._speed_mark[0] >= 2.0:
            steps_per_s = (step - self._speed_mark[1]) / (now - self._speed_mark[0])
            fields["images_per_s"] = steps_per_s * self.batch_size
            fields["eta_s"] = max(0.0, (status.total_steps - step) / max(steps_per_s, 1e-9))
            fields["eta_at"] = time.time()
            self._speed_mark = (now, step)
        self.update(**fields)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        with self._lock:
            best = self._status.best_test_acc
        self.update(
            epochs_done=epoch,
            best_test_acc=max(logs["test_acc"], best if best is not None else -1.0),
            images_per_s=logs["images_per_s"],
        )


class RunRecorder(Callback):
    """Writes what the engine emits into the run folder: epoch rows and weights.

    last.pt is always the end of a whole epoch and, until the run finishes, carries the training
    state too, so an interrupted or stopped run can be resumed from it (`resume_run`).
    """

    def __init__(self, folder: Path, model: torch.nn.Module, spec: RunSpec, classes: Sequence[str]):
        self.folder, self.model, self.spec, self.classes = folder, model, spec, tuple(classes)
        self.best_acc = -1.0
        self.epochs_done = 0
        self.train_state: dict[str, Any] | None = None

    def continue_after(self, history: Sequence[dict[str, float]]) -> None:
        """Resuming: the rows so far become metrics.jsonl again, and the best so far counts."""
        self.epochs_done = len(history)
        self.best_acc = max((row[_chosen_on(row)] for row in history), default=-1.0)
        lines = "".join(json.dumps(row) + "\n" for row in history)
        atomic_write_text(self.folder / METRICS_FILE, lines)
        truncate_batch_log(self.folder, len(history))

    def on_train_state(self, epoch: int, state: dict[str, Any]) -> None:
        self.train_state = state

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        # weights first, then the epoch's row: a kill in between never lists a best without weights
        self.epochs_done = epoch
        chosen_on = _chosen_on(logs)
        if logs[chosen_on] > self.best_acc:
            self.best_acc = logs[chosen_on]
            self.save("best", test_acc=logs["test_acc"], chosen_on=chosen_on)
        self.save("last", train_state=self.train_state, test_acc=logs["test_acc"])
        with open(self.folder / METRICS_FILE, "a") as file:
            file.write(json.dumps(logs) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def save(self, which: str, train_state: dict[str, Any] | None = None, **meta: Any) -> None:
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
            train_state=train_state,
        )


def _chosen_on(row: dict[str, float]) -> str:
    """best.pt is chosen on the validation split when the run holds one out."""
    return "val_acc" if "val_acc" in row else "test_acc"


def execute_run(
    run_id: str,
    root: Path = DEFAULT_ROOT,
    callbacks: Sequence[Callback] = (),
    stop_event: threading.Event | None = None,
    device: str = "auto",
) -> FitResult:
    """Train the queued run `run_id` to the end, recording everything in its folder.

    Stops at the next batch once `stop_event` is set or the run's stop file appears. A failure is
    recorded as status "failed" with the error and raised again; an interruption (Ctrl-C) as
    "interrupted".
    """
    folder = run_dir(run_id, root)
    spec = RunSpec.from_dict(read_json(folder / "config.json"))
    reporter = StatusReporter(folder, _claim(folder, run_id), spec.batch_size)
    reporter.start()
    try:
        result, extra = _execute(
            spec, folder, root, [reporter, *callbacks], StopRequest(folder, stop_event),
            pick_device(device),
        )  # fmt: skip
    except Exception as error:
        reporter.end("failed", error=f"{type(error).__name__}: {error}")
        raise
    except BaseException as error:  # KeyboardInterrupt, SystemExit
        reporter.end("interrupted", error=f"{type(error).__name__}: interrupted")
        raise
    if result.status == "finished" and spec.role != "teacher":
        reporter.update(phase="evaluating")
        _evaluate(run_id, root, device)
    reporter.end(result.status, best_test_acc=result.best_test_acc, **extra)
    return result


def _evaluate(run_id: str, root: Path, device: str) -> None:
    """Store the finished student's evaluation; a failure there does not undo the training."""
    try:
        evaluate_run(run_id, root, device=device)
    except Exception as error:
        print(f"evaluation of {run_id} failed: {type(error).__name__}: {error}", file=sys.stderr)


def _claim(folder: Path, run_id: str) -> RunStatus:
    """The run's status, now this process's; RunError unless the run waits to be trained."""
    try:
        status = read_status(folder)
    except StatusError as error:
        raise RunError(str(error)) from error
    launched = status.state == "running" and status.phase == "starting"  # by the scheduler
    if status.state != "queued" and not launched:
        if status.observed().state == "running":
            raise RunError(f"Run {run_id} is already training (pid {status.pid}).")
        raise RunError(f"Run {run_id} is {status.state}; only a queued run can be trained.")
    return status.replace(
        state="running",
        phase="loading data",
        started_at=time.time(),
        **this_process(),
    )


def _execute(spec, folder, root, callbacks, stop, device) -> tuple[FitResult, dict[str, Any]]:
    train, val = load_split(spec.data, "train").split_off(spec.val_split)
    check_training_size(spec, len(train) + len(val))  # the data may have changed since
    train = train.subset(spec.train_subset, spec.seed)
    test = load_split(spec.data, "test")
    require_same_classes(train.classes, test.classes, f"{spec.data} train/", "test/")
    torch.manual_seed(spec.seed)
    model = _initial_model(spec, len(train.classes))
    distillation, teacher_outputs = _distillation(spec, train, root, device)
    recorder = RunRecorder(folder, model, spec, train.classes)
    resume = _resume_point(folder, model, spec)
    if resume is not None:
        recorder.continue_after(resume["history"])
    else:
        _clear_records(folder)
    result = fit(
        model,
        train,
        test,
        recorded_train_config(folder, spec),
        distillation=distillation,
        callbacks=[recorder, *callbacks],
        stop_event=stop,
        device=device,
        val=val,  # empty without --val-split: the engine then reports no val_acc
        resume=resume,
    )
    if result.status == "finished":  # nothing left to resume: last.pt drops the training state
        recorder.save("last", test_acc=result.history[-1]["test_acc"])
    extra = {"teacher_cache": teacher_outputs.summary()} if teacher_outputs else {}
    return result, extra


def _resume_point(folder: Path, model: torch.nn.Module, spec: RunSpec) -> dict[str, Any] | None:
    """The training state in last.pt, its weights loaded into `model`; None to start afresh."""
    try:
        payload = read_checkpoint(folder / "last.pt")
    except CheckpointError:
        return None
    state = payload.get("train_state")
    if not isinstance(state, dict) or not 0 < len(state.get("history", ())) < spec.epochs:
        return None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise RunError(f"Cannot resume {folder.name}: last.pt does not fit ({error}).") from error
    return state


def _clear_records(folder: Path) -> None:
    """A run that starts from epoch 1 again (nothing to resume from) keeps no earlier rows."""
    for name in (METRICS_FILE, BATCH_LOG):
        (folder / name).unlink(missing_ok=True)


def resume_run(run_id: str, root: Path = DEFAULT_ROOT) -> int:
    """Queue a stopped, interrupted or failed run again; it continues after the last whole epoch
    in its last.pt (returned; 0 when it has none and starts over)."""
    record = load_run(run_id, root)
    if not record.readable:
        raise RunError(f"Run {run_id} is {record.run_status.error}; it cannot be resumed.")
    if record.status not in RESUMABLE:
        raise RunError(
            f"Run {run_id} is {record.status}; only a {' or '.join(RESUMABLE)} run resumes."
        )
    try:
        state = read_checkpoint(record.checkpoint("last"), mmap=True).get("train_state")
        epochs_done = len(state["history"]) if isinstance(state, dict) else 0
    except CheckpointError:
        epochs_done = 0
    (record.folder / STOP_FILE).unlink(missing_ok=True)
    phase = f"queued to resume after epoch {epochs_done}" if epochs_done else "queued to start over"
    write_status(record.folder, RunStatus(state="queued", phase=phase))
    return epochs_done


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
    check_teacher(spec, train.classes, root)
    cache_dir = cache_dir_for(
        checkpoint,
        source_fingerprint(spec.data),
        spec.val_split,
        len(train),
        spec.seed,
        spec.teacher_tta,
    )
    outputs = TeacherOutputs(
        teacher,
        train.images,
        spec.seed,
        cache_dir,
        device=device,
        classes=len(train.classes),
        tta=spec.teacher_tta,
    )
    return Distillation(outputs, spec.temperature, spec.alpha), outputs
