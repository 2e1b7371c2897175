"""batches.csv: every batch's loss, appended by the training process and tailed by whoever watches.

One line per batch, `step,epoch,loss`. The writer buffers lines and appends them at most every
FLUSH_SECONDS; a reader keeps its byte offset and reads only what was added since, skipping a
line that is still half written.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from kdcore.files import atomic_write_text

BATCH_LOG = "batches.csv"
FLUSH_SECONDS = 0.5
MAX_BATCH_POINTS = 3000  # batch losses kept for a live curve; older ones are thinned beyond it


class BatchLogWriter:
    """Appends `step,epoch,loss` lines; `add` is cheap, `flush` writes what was added."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / BATCH_LOG
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def add(self, step: int, epoch: int, loss: float) -> None:
        with self._lock:
            self._pending.append(f"{step},{epoch},{loss:.6g}\n")
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            self._last_flush = time.monotonic()
            if lines:
                with open(self.path, "a") as file:
                    file.write("".join(lines))


def truncate_batch_log(folder: Path, epochs: int) -> None:
    """Keep the lines of the first `epochs` epochs (a resumed run repeats the rest); the file is
    replaced, so tails start over."""
    path = folder / BATCH_LOG
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return
    kept = [line for line in lines if _epoch_of(line) is not None and _epoch_of(line) <= epochs]
    atomic_write_text(path, "".join(kept))


def _epoch_of(line: str) -> int | None:
    try:
        return int(line.split(",")[1])
    except (IndexError, ValueError):
        return None


class BatchLogTail:
    """The batch losses of one run so far, read incrementally; safe to share between threads."""

    def __init__(self, folder: Path, max_points: int = MAX_BATCH_POINTS) -> None:
        self.path = folder / BATCH_LOG
        self.max_points = max_points
        self._offset = 0
        self._identity: int | None = None  # the file's inode: a new one means start over
        self._points: list[dict[str, float]] = []
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, float]]:
        """All points so far (`step`, `epoch`, `loss`), older ones thinned beyond `max_points`."""
        with self._lock:
            new_points = self._new_points()  # may start over, replacing self._points
            self._points.extend(new_points)
            while len(self._points) > self.max_points:
                del self._points[: len(self._points) // 2 : 2]  # thin the older half
            return list(self._points)

    def _new_points(self) -> list[dict[str, float]]:
        try:
            with open(self.path, "rb") as file:
                identity = os.fstat(file.fileno()).st_ino
                if identity != self._identity:  # replaced (a resumed run): read it from the start
                    self._identity, self._offset, self._points = identity, 0, []
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return []
        whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for next time
        self._offset += len(whole)
        points = []
        for line in whole.decode().splitlines():
            try:
                step, epoch, loss = line.split(",")
                points.append({"step": int(step), "epoch": int(epoch), "loss": float(loss)})
            except ValueError:
                continue
        return points
