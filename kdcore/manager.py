"""The run manager: a queue of runs trained one after another on a background thread.

It is process-wide and thread-safe. The training thread writes each run's live state under a lock;
readers (dashboard pages) take snapshots. Nothing here knows about Streamlit.

>>> manager = RunManager(Path("checkpoints"))
>>> run_id = manager.submit(RunSpec(role="student", data="synthetic", epochs=2))
>>> manager.snapshot(run_id)["status"]
'queued'
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import torch

from kdcore.engine import Callback
from kdcore.execute import execute_run
from kdcore.runs import (
    DEFAULT_ROOT,
    RunError,
    RunRecord,
    RunSpec,
    create_run,
    list_runs,
    load_run,
    write_status,
)

MAX_BATCH_POINTS = 5000


class LiveState(Callback):
    """What a run is doing right now, updated by the engine's events, read under the lock."""

    def __init__(self, run_id: str, spec: RunSpec) -> None:
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {
            "run_id": run_id,
            "status": "queued",
            "phase": "queued",
            "epochs": spec.epochs,
            "epoch": 0,
            "batch": 0,
            "batches": 0,
            "steps_per_epoch": None,
            "step": 0,
            "batch_losses": [],
            "metrics": [],
            "images_per_s": None,
            "eta_s": None,
            "teacher_progress": None,
            "error": None,
            "started_at": None,
            "ended_at": None,
        }
        self.batch_timer: tuple[float, int] | None = None

    def update(self, **fields: Any) -> None:
        with self.lock:
            self.state.update(fields)

    def snapshot(self) -> dict[str, Any]:
        """A copy safe to read while training goes on. Logged points are never changed after
        they are appended, so copying the lists (not the points) is enough, and cheap."""
        with self.lock:
            return {
                **self.state,
                "batch_losses": list(self.state["batch_losses"]),
                "metrics": list(self.state["metrics"]),
            }

    @property
    def status(self) -> str:
        with self.lock:
            return self.state["status"]

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.update(
            status="running",
            phase="training",
            started_at=time.time(),
            steps_per_epoch=info["steps_per_epoch"],
        )

    def on_phase(self, phase: str, done: int, total: int) -> None:
        self.update(phase=phase, teacher_progress=done / max(1, total))

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        now = time.perf_counter()
        with self.lock:
            self.state.update(
                phase="training",
                step=step,
                epoch=logs["epoch"],
                batch=logs["batch"],
                batches=logs["batches"],
            )
            losses = self.state["batch_losses"]
            losses.append({"step": step, "loss": logs["loss"]})
            if len(losses) > MAX_BATCH_POINTS:
                del losses[::2]
            self._update_speed(now, step)

    def _update_speed(self, now: float, step: int) -> None:
        if self.batch_timer is None or step < self.batch_timer[1]:
            self.batch_timer = (now, step)
            return
        started, first_step = self.batch_timer
        if step - first_step >= 10:
            batch_size = self.state.get("batch_size", 0)
            steps_per_s = (step - first_step) / (now - started)
            remaining = self.state["epochs"] * (self.state["steps_per_epoch"] or 0) - step
            self.state["images_per_s"] = steps_per_s * batch_size if batch_size else None
            self.state["eta_s"] = max(0.0, remaining / steps_per_s)
            self.batch_timer = (now, step)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        with self.lock:
            self.state["metrics"].append(dict(logs))
            self.state["images_per_s"] = logs["images_per_s"]

    def on_fit_end(self, status: str, logs: dict[str, Any]) -> None:
        # Only the phase: the status turns final in RunManager._work once execute_run has written
        # the run folder (weights, status.json), so readers never see a finished live state beside
        # a folder that still says "running" (which list_runs would report as interrupted).
        self.update(phase=status)


class RunManager:
    """Queues runs and trains them one at a time on a daemon thread."""

    def __init__(self, root: Path = DEFAULT_ROOT, training_threads: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.training_threads = training_threads
        self._lock = threading.Lock()
        self._live: dict[str, LiveState] = {}
        self._stops: dict[str, threading.Event] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="kdcore-runs", daemon=True)
        self._worker.start()

    def submit(self, spec: RunSpec) -> str:
        """Validate and queue a run; RunError (with a clear message) for impossible settings."""
        run_id = create_run(spec, self.root)
        live = LiveState(run_id, spec)
        live.update(batch_size=spec.batch_size)
        with self._lock:
            self._live[run_id] = live
            self._stops[run_id] = threading.Event()
        self._queue.put(run_id)
        return run_id

    def stop(self, run_id: str) -> None:
        """Ask a run to stop at the next batch; a queued run is cancelled before it starts."""
        with self._lock:
            event = self._stops.get(run_id)
        if event is None:
            raise RunError(f"Run {run_id!r} is not queued or running here.")
        event.set()

    def snapshot(self, run_id: str) -> dict[str, Any] | None:
        """The live state of a run this manager owns (None for runs only on disk)."""
        with self._lock:
            live = self._live.get(run_id)
        return live.snapshot() if live else None

    def active_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(
                rid for rid, live in self._live.items() if live.status in ("queued", "running")
            )

    def runs(self) -> list[RunRecord]:
        return list_runs(self.root, self.active_ids())

    def run(self, run_id: str) -> RunRecord:
        return load_run(run_id, self.root, self.active_ids())

    def wait(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until a run leaves queued/running (tests and scripts); returns its snapshot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.snapshot(run_id)
            if state is None or state["status"] not in ("queued", "running"):
                return state or {}
            time.sleep(0.05)
        raise TimeoutError(f"Run {run_id} still active after {timeout} s.")

    def _work(self) -> None:
        if self.training_threads:
            torch.set_num_threads(self.training_threads)
        while True:
            run_id = self._queue.get()
            with self._lock:
                live, stop = self._live[run_id], self._stops[run_id]
            if stop.is_set():
                write_status(self.root / run_id, "stopped", error="cancelled before it started")
                live.update(status="stopped", phase="cancelled", ended_at=time.time())
                continue
            try:
                result = execute_run(run_id, self.root, callbacks=[live], stop_event=stop)
            except Exception as error:  # recorded in status.json by execute_run
                live.update(status="failed", phase="failed", error=str(error), ended_at=time.time())
            else:
                status = result.status if result else "finished"
                live.update(status=status, phase=status, ended_at=time.time())


def default_training_threads() -> int:
    """Leave one core to the user interface when there are few."""
    return max(1, (os.cpu_count() or 2) - 1)
