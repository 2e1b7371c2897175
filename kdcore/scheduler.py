"""The run queue: queued run folders -> `python -m kdcore execute` processes, a few at a time.

A queued run is a folder whose status says "queued", so the queue survives a restart of whoever
runs it. `RunQueue.tick` starts the oldest queued runs while fewer than `max_running` train, reaps
its children, records why a run died without saying so, and sends SIGTERM (which `execute` treats
as one more stop request) to a run that ignored a stop request for STOP_GRACE_SECONDS. Each run
is its own session (process group): it outlives the dashboard that started it. Nothing here
knows about Streamlit.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kdcore.runs import (
    DEFAULT_ROOT,
    RunError,
    RunRecord,
    RunSpec,
    create_run,
    list_runs,
    load_run,
    request_stop,
    run_dir,
    stop_requested_at,
)
from kdcore.status import RunStatus, StatusError, read_status, this_process, write_status

STOP_GRACE_SECONDS = 15.0  # after a stop request, how long a run may take before SIGTERM
RUN_NICENESS = 10  # training yields the CPU to the dashboard when both want it
LOCK_FILE = ".queue.lock"
log = logging.getLogger(__name__)


def default_max_running() -> int:
    """$KDCORE_MAX_RUNS, else 1 on a CPU-only machine and 4 with a GPU (small runs share one)."""
    if os.environ.get("KDCORE_MAX_RUNS"):
        return max(1, int(os.environ["KDCORE_MAX_RUNS"]))
    import torch

    return 4 if torch.cuda.is_available() else 1


def threads_per_run(max_running: int) -> int:
    """CPU threads for each training process, leaving one core to the dashboard."""
    return max(1, ((os.cpu_count() or 2) - 1) // max(1, max_running))


class RunQueue:
    """Starts queued runs under `root` as processes; stops them; says what each one is doing."""

    def __init__(
        self, root: Path = DEFAULT_ROOT, max_running: int | None = None, threads: int | None = None
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running = max_running or default_max_running()
        self.threads = threads or threads_per_run(self.max_running)
        self._children: dict[str, subprocess.Popen] = {}
        self._terminated: set[str] = set()
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None

    def submit(self, spec: RunSpec) -> str:
        """Validate and queue a run; RunError (with a clear message) for impossible settings."""
        run_id = create_run(spec, self.root)
        self.tick()
        return run_id

    def stop(self, run_id: str) -> None:
        """A queued run is cancelled; a running one is asked to stop at its next batch."""
        folder = run_dir(run_id, self.root)
        with self._lock, _locked(self.root):
            record = load_run(run_id, self.root)
            if record.status == "queued":
                write_status(
                    folder,
                    record.run_status.replace(
                        state="stopped",
                        phase="stopped",
                        error="cancelled before it started",
                        ended_at=time.time(),
                    ),
                )
                return
        if record.status != "running":
            raise RunError(f"Run {run_id} is {record.status}; there is nothing to stop.")
        request_stop(folder)

    def runs(self) -> list[RunRecord]:
        return list_runs(self.root)

    def run(self, run_id: str) -> RunRecord:
        return load_run(run_id, self.root)

    def queue(self) -> list[RunRecord]:
        """Queued and running runs, in the order they started or will start."""
        return sorted((r for r in self.runs() if r.active), key=lambda r: r.created_at)

    def tick(self) -> None:
        """Reap ended children, start queued runs while there is room, escalate ignored stops."""
        with self._lock, _locked(self.root):
            self._reap()
            records = list_runs(self.root)
            running = [r for r in records if r.status == "running"]
            queued = sorted(
                (r for r in records if r.status == "queued"), key=lambda r: r.created_at
            )
            for record in queued[: max(0, self.max_running - len(running))]:
                self._launch(record)
            for record in running:
                self._escalate_stop(record)
            for record in records:
                orphan = record.run_id not in self._children  # children are reaped, with reason
                if orphan and record.status == "interrupted" and not record.run_status.ended_at:
                    _record_interruption(record)

    def start_polling(self, every: float = 1.0) -> None:
        """Tick on a daemon thread, so the queue moves while nobody looks."""
        if self._poller is not None:
            return

        def poll() -> None:
            while self.root.is_dir():  # a runs folder that was removed has nothing to start
                try:
                    self.tick()
                except Exception:  # a bad folder must not end the queue
                    log.exception("run queue tick failed")
                time.sleep(every)

        self._poller = threading.Thread(target=poll, name="kdcore-queue", daemon=True)
        self._poller.start()

    def wait(self, run_id: str, timeout: float = 60.0) -> RunRecord:
        """Tick until a run leaves queued/running (tests and scripts); returns its record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            record = self.run(run_id)
            if not record.active:
                return record
            time.sleep(0.1)
        raise TimeoutError(f"Run {run_id} still active after {timeout} s.")

    def _launch(self, record: RunRecord) -> None:
        # "running / starting" before the process exists, so no other tick starts it twice
        starting = record.run_status.replace(state="running", phase="starting", **this_process())
        write_status(record.folder, starting)
        command = [
            sys.executable, "-m", "kdcore", "execute", record.run_id,
            "--out", str(self.root), "--threads", str(self.threads), "--nice", str(RUN_NICENESS),
            "--idle",  # and gives up a core at once when a page's work wakes
        ]  # fmt: skip
        source = str(Path(__file__).resolve().parents[1])  # where `kdcore` imports from
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        with open(record.folder / "output.log", "ab") as output:
            self._children[record.run_id] = subprocess.Popen(
                command,
                env={**os.environ, "PYTHONPATH": path},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: it outlives this process
            )

    def _reap(self) -> None:
        for run_id, child in list(self._children.items()):
            code = child.poll()
            if code is None:
                continue
            del self._children[run_id]
            self._terminated.discard(run_id)
            folder = run_dir(run_id, self.root)
            try:
                status = read_status(folder)
            except StatusError:
                continue
            if status.state == "running":  # it ended without recording how
                write_status(folder, _ended_silently(status, code))

    def _escalate_stop(self, record: RunRecord) -> None:
        asked = stop_requested_at(record.folder)
        pid = record.run_status.pid
        if asked is None or record.run_id in self._terminated or not pid:
            return
        if time.time() - asked > STOP_GRACE_SECONDS and record.run_status.phase != "starting":
            self._terminated.add(record.run_id)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)  # the run stops at its next batch, as on a request


def _ended_silently(status: RunStatus, code: int) -> RunStatus:
    if code < 0:
        name = signal.Signals(-code).name
        state, reason = "interrupted", f"its process was killed by {name}"
    else:
        state, reason = "failed", f"its process exited with code {code} (see output.log)"
    return status.replace(state=state, phase=state, error=reason, ended_at=time.time())


def _record_interruption(record: RunRecord) -> None:
    """Write down what an observer concluded: the file said running, its process is gone."""
    try:
        on_disk = read_status(record.folder)
    except StatusError:
        return
    if on_disk.state == "running" and on_disk.heartbeat == record.run_status.heartbeat:
        write_status(record.folder, record.run_status.replace(ended_at=time.time()))


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One queue at a time per runs folder, across processes (two dashboards, a script)."""
    with open(root / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
