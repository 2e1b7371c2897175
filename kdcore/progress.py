"""Training in a terminal: a progress bar (one more engine callback) and SIGTERM as a stop."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from kdcore.engine import Callback, FitResult
from kdcore.execute import execute_run
from kdcore.runs import RunSpec, create_run


def train_in_terminal(spec: RunSpec, out: Path, device: str) -> tuple[str, FitResult]:
    """Create the run folder and train it in this process, with a progress bar on stderr."""
    run_id = create_run(spec, out)
    print(f"run {run_id} ({spec.label or spec.role}) -> {out / run_id}", file=sys.stderr)
    return run_id, execute_in_terminal(run_id, out, device)


def execute_in_terminal(run_id: str, out: Path, device: str) -> FitResult:
    with stop_on_sigterm() as stop:
        return execute_run(run_id, out, [ProgressBar()], stop_event=stop, device=device)


@contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """An event that SIGTERM sets (instead of ending the process), while the block runs."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar(Callback):
    """Redraws one line per batch on a terminal; prints one line per epoch everywhere."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 24) -> None:
        self.stream, self.width = stream, width
        self.live = stream.isatty()
        self.epochs = 0
        self.last_draw = 0.0

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        self._line(
            f"training on {info['device']}: {info['train_size']} images, "
            f"{info['steps_per_epoch']} batches/epoch, {self.epochs} epochs\n"
        )

    def on_phase(self, phase: str, done: int, total: int) -> None:
        if self._due(done == total):
            self._line(f"\r{phase} outputs {self._bar(done / total)} {done}/{total}")

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if self._due(logs["batch"] == logs["batches"]):
            fraction = logs["batch"] / logs["batches"]
            self._line(
                f"\repoch {logs['epoch']}/{self.epochs} {self._bar(fraction)} "
                f"{logs['batch']}/{logs['batches']} loss {logs['loss']:.3f}"
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self._line(
            f"\repoch {epoch}/{self.epochs}: train loss {logs['train_loss']:.3f} "
            f"acc {logs['train_acc']:.2%} | test loss {logs['test_loss']:.3f} "
            f"acc {logs['test_acc']:.2%} | {logs['images_per_s']:.0f} img/s | "
            f"elapsed {format_seconds(logs['elapsed_s'])} ETA {format_seconds(logs['eta_s'])}\n",
            always=True,
        )

    def on_fit_end(self, status: str, logs: dict[str, Any]) -> None:
        final, tta = logs.get("final_test_acc"), logs.get("final_test_acc_tta")
        summary = f"; last epoch's test accuracy {final:.2%}" if final is not None else ""
        if tta is not None:
            summary += f", {tta:.2%} with test-time augmentation"
        self._line(f"{status}{summary}\n", always=True)

    def _due(self, last: bool) -> bool:
        now = time.monotonic()
        if self.live and (last or now - self.last_draw > 0.2):
            self.last_draw = now
            return True
        return False

    def _bar(self, fraction: float) -> str:
        filled = int(fraction * self.width)
        return "[" + "#" * filled + "." * (self.width - filled) + "]"

    def _line(self, text: str, always: bool = False) -> None:
        if self.live or always or text.endswith("\n"):
            self.stream.write(text if self.live else text.lstrip("\r"))
            self.stream.flush()
