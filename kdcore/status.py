"""status.json: what a run is doing, in one versioned schema that only this module reads and writes.

The process that trains a run (`kdcore execute`) rewrites the file about once a second: its state,
pid, heartbeat, phase and progress. Whoever watches a run reads it with `read_status` and asks
`observed()` what it is: a file that says "running" whose process is gone, or whose heartbeat
stopped, is a run that was interrupted.

>>> status = RunStatus(state="running", pid=os.getpid(), heartbeat=time.time())
>>> status.observed().state
'running'
>>> RunStatus(state="running", pid=None, heartbeat=0.0).observed().state
'interrupted'
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdcore.files import atomic_write_text

STATUS_VERSION = 1
STATES = ("queued", "running", "finished", "stopped", "failed", "interrupted")
ACTIVE = ("queued", "running")
HEARTBEAT_SECONDS = 1.0  # how often a training process rewrites its status
STALE_AFTER_SECONDS = 30.0  # a heartbeat older than this means the process no longer trains
STATUS_FILE = "status.json"


class StatusError(ValueError):
    """A status.json that cannot be read: corrupt, or written by a newer kdcore."""


@dataclass(frozen=True)
class RunStatus:
    """One run's state as its folder tells it; every field has a meaning when the file is old."""

    state: str = "queued"
    phase: str = "queued"  # "loading data", "teacher outputs 3/10", "epoch 4/10", ...
    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None  # time.time() of the training process's last write
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    epoch: int = 0  # the epoch being trained (1-based), or the last one trained
    epochs: int = 0
    step: int = 0  # batches trained so far, over all epochs
    total_steps: int = 0
    epochs_done: int = 0
    images_per_s: float | None = None
    eta_s: float | None = None  # seconds left, as estimated at `eta_at`
    eta_at: float | None = None
    best_test_acc: float | None = None
    teacher_cache: dict[str, Any] | None = None
    version: int = STATUS_VERSION

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise StatusError(f"unknown state {self.state!r} (known: {', '.join(STATES)})")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def fraction_done(self) -> float | None:
        """Trained batches over all batches, once the run knows how many there are."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else None

    def eta_remaining(self, now: float | None = None) -> float | None:
        """Seconds left now: the estimate counts down between updates (during a test pass too)."""
        if self.eta_s is None:
            return None
        since = (now or time.time()) - self.eta_at if self.eta_at is not None else 0.0
        return max(0.0, self.eta_s - max(0.0, since))

    def replace(self, **fields: Any) -> RunStatus:
        return dataclasses.replace(self, **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> RunStatus:
        """A status from its JSON object; StatusError (with the reason) when it is not one."""
        if not isinstance(values, dict):
            raise StatusError("it is not a JSON object")
        if "version" not in values:
            return cls._from_unversioned(values)
        if not isinstance(values["version"], int) or values["version"] > STATUS_VERSION:
            raise StatusError(
                f"it was written by a newer kdcore (version {values['version']!r}; this one "
                f"reads up to {STATUS_VERSION}). Update kdcore to watch this run."
            )
        known = {field.name for field in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in values.items() if key in known})
        except TypeError as error:
            raise StatusError(str(error)) from error

    @classmethod
    def _from_unversioned(cls, values: dict[str, Any]) -> RunStatus:
        """Files written before the schema had a version: their state, times, error, results."""
        if values.get("status") not in STATES:
            raise StatusError("it has neither a version nor a known status")
        return cls(
            state=values["status"],
            phase=values["status"],
            pid=values.get("pid"),
            heartbeat=values.get("updated_at"),
            started_at=values.get("started_at"),
            ended_at=values.get("ended_at"),
            error=values.get("error"),
            epochs_done=values.get("epochs_done") or 0,
            best_test_acc=values.get("best_test_acc"),
            teacher_cache=values.get("teacher_cache"),
        )

    def observed(self, now: float | None = None) -> RunStatus:
        """This status as an observer sees it: "running" only while its process lives and beats."""
        if self.state != "running":
            return self
        reason = self._why_not_running(time.time() if now is None else now)
        if reason is None:
            return self
        return self.replace(state="interrupted", phase="interrupted", error=reason)

    def _why_not_running(self, now: float) -> str | None:
        if self.heartbeat is None or now - self.heartbeat > STALE_AFTER_SECONDS:
            age = "never" if self.heartbeat is None else f"{now - self.heartbeat:.0f} s ago"
            return f"its process stopped reporting (last heartbeat: {age})"
        if self.host in (None, socket.gethostname()) and not process_alive(self.pid):
            return f"its process (pid {self.pid}) ended without recording why"
        return None


def process_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts as ended)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie has exited and waits only to be reaped
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def read_status(folder: Path) -> RunStatus:
    """The status.json of a run folder; StatusError with a clear message when it is unreadable."""
    path = folder / STATUS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StatusError(f"{path} is missing") from None
    except OSError as error:
        raise StatusError(f"{path} cannot be read: {error}") from error
    try:
        values = json.loads(text)
    except ValueError:
        raise StatusError(f"{path} is corrupt: not valid JSON") from None
    try:
        return RunStatus.from_dict(values)
    except StatusError as error:
        raise StatusError(f"{path} cannot be used: {error}") from error


def write_status(folder: Path, status: RunStatus) -> None:
    """Replace a run's status.json atomically: a reader sees the old file or the new one."""
    path = folder / STATUS_FILE
    atomic_write_text(path, json.dumps(status.to_dict(), indent=1))


def this_process(**fields: Any) -> dict[str, Any]:
    """The fields that say which process trains a run, with a fresh heartbeat."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time(), **fields}
