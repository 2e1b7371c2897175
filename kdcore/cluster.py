"""A sweep's trials on Ray: each queued run folder trained by `execute_run` in a Ray task.

Ray Core tasks, not Ray Tune. The unit of work already exists: a run folder and `execute_run`,
with its own status, stop file and evaluation, and a sweep folder that names the runs. Tune would
keep a second copy of all that (its trials, its results folders, its resume) beside ours; a task
per run folder keeps the folder the one truth, and the dashboard watches Ray trials as it watches
local ones. What Ray adds is what the local queue lacks: placement by resources (CPUs and
fractional GPUs per trial) on every node of a cluster.

    with RayExecutor(address="HEAD:6379", trial_cpus=2, trial_gpus=0.25) as executor:
        executor.check_shared_storage(spec, root)  # before any run is created
        records = executor.run_trials(run_ids, root)  # same signature as sweep.run_trials

Without an address (`--ray-address` or $RAY_ADDRESS) a local Ray is started, and shut down after.
The kdcore package travels to the workers as a runtime_env py_module, so the nodes need only the
requirements installed; the run folders, the teacher and the data must be on storage every node
mounts at the same path (checked by a task on every node before anything is created). A task
whose worker dies leaves its run interrupted with the reason; a claimed run is never retried.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kdcore.cluster_checks import (
    ClusterError,
    check_answers,
    check_shared_storage,
    first_line,
    import_ray,
    trial_nodes,
)
from kdcore.runs import DEFAULT_ROOT, RunRecord, load_run, request_stop, run_dir, stop_requested_at
from kdcore.scheduler import STOP_GRACE_SECONDS, _locked
from kdcore.status import RunStatus, read_status, this_process, write_status
from kdcore.sweep import SweepSpec, TrialRunner, validate_sweep

CLAIM_REFRESH_SECONDS = 5.0  # heartbeat of a claimed run whose task waits for a worker
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # trials pass run ids, not tensors
DIED = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "TaskCancelledError")


@contextlib.contextmanager
def ray_trials(
    spec: SweepSpec, root: Path, address: str | None, trial_cpus: int = 1, trial_gpus: float = 0.0
) -> Iterator[TrialRunner]:
    """Check the sweep, connect and check the storage, all before a run exists; yields the
    trial runner (interchangeable with `sweep.run_trials`)."""
    validate_sweep(spec, root)
    with RayExecutor(address, trial_cpus, trial_gpus) as executor:
        executor.check_shared_storage(spec, root)
        yield executor.run_trials


class RayExecutor:
    """A connection to Ray and the trials it runs; a context manager."""

    def __init__(
        self,
        address: str | None = None,
        trial_cpus: int = 1,
        trial_gpus: float = 0.0,
        local_cpus: int | None = None,
    ) -> None:
        if trial_cpus < 1:
            raise ClusterError(f"--trial-cpus must be at least 1 (got {trial_cpus}).")
        if trial_gpus < 0 or (trial_gpus > 1 and trial_gpus != int(trial_gpus)):
            raise ClusterError(
                f"--trial-gpus must be a fraction up to 1 or a whole number (got {trial_gpus:g})."
            )
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.trial_cpus, self.trial_gpus, self.local_cpus = trial_cpus, trial_gpus, local_cpus
        self.ray = import_ray()
        self._owned = False
        self._train = self.ray.remote(max_calls=1, max_retries=0)(train_trial)  # a process each

    def __enter__(self) -> RayExecutor:
        self.connect()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"the Ray cluster at {self.address}" if self.address else "the local Ray"

    def connect(self) -> None:
        """Join the cluster (a local Ray without an address); a process already joined keeps
        its connection (and must have shipped kdcore itself)."""
        if self.address not in (None, "local"):
            check_answers(self.address)
        if self.ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports leave the machine
        options: dict[str, Any] = {"logging_level": "WARNING", "runtime_env": _runtime_env()}
        if self.address in (None, "local"):
            options.update(
                num_cpus=self.local_cpus,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
            )
        self.ray.init(address=self.address or "local", **options)
        self._owned = True

    def close(self) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False

    def check_shared_storage(self, spec: SweepSpec, root: Path = DEFAULT_ROOT) -> None:
        """Every node a trial fits on sees `root`, the teacher and the data at the same paths
        (`kdcore.cluster_checks`); ClusterError naming the node and the path if not."""
        nodes = trial_nodes(self.ray, self.trial_cpus, self.trial_gpus, self.where)
        check_shared_storage(self.ray, nodes, spec, root)

    def run_trials(
        self,
        run_ids: Sequence[str],
        root: Path = DEFAULT_ROOT,
        max_running: int | None = None,
        on_progress: Callable[[list[RunRecord]], None] = lambda records: None,
        poll_seconds: float = 1.0,
    ) -> list[RunRecord]:
        """Train the queued trials as Ray tasks (at most `max_running` at once, else as many as
        the cluster fits); returns their records once none is queued or running."""
        root = Path(root).resolve()
        waiting = [run_id for run_id in run_ids if load_run(run_id, root).status == "queued"]
        in_flight: dict[Any, str] = {}
        limit = max_running or len(run_ids)
        try:
            while True:
                while waiting and len(in_flight) < limit:
                    run_id = waiting.pop(0)
                    ref = self._submit(run_id, root)
                    if ref is not None:
                        in_flight[ref] = run_id
                if in_flight:
                    ready, _ = self.ray.wait(
                        list(in_flight), num_returns=len(in_flight), timeout=poll_seconds
                    )
                    for ref in ready:
                        self._settle(in_flight.pop(ref), ref, root)
                    _keep_claims(in_flight.values(), root)
                records = [load_run(run_id, root) for run_id in run_ids]
                on_progress(records)
                if not waiting and not in_flight and not any(r.active for r in records):
                    return records
                if not in_flight:
                    time.sleep(poll_seconds)  # runs trained elsewhere: wait for them too
        except KeyboardInterrupt:
            self._stop(in_flight, root)
            raise

    def _submit(self, run_id: str, root: Path) -> Any:
        """Claim a queued run ("running / starting", as the local queue does) and start its task."""
        folder = run_dir(run_id, root)
        with _locked(root):  # the local queue of a dashboard on the same folder
            status = read_status(folder)
            if status.state != "queued":
                return None
            claimed = status.replace(state="running", phase="starting", **this_process())
            write_status(folder, claimed)
        env_vars = {key: value for key, value in os.environ.items() if key.startswith("KDCORE_")}
        return self._train.options(
            num_cpus=self.trial_cpus, num_gpus=self.trial_gpus, runtime_env={"env_vars": env_vars}
        ).remote(run_id, str(root), self.trial_cpus, os.getcwd())

    def _settle(self, run_id: str, ref: Any, root: Path) -> None:
        """A task ended: a run it left queued or running gets the reason written down."""
        try:
            self.ray.get(ref)
            state, reason = "failed", "its Ray task ended without recording why"
        except self.ray.exceptions.RayTaskError as error:
            state, reason = "failed", f"its Ray task failed: {first_line(error.cause or error)}"
        except self.ray.exceptions.RayError as error:
            state = "interrupted" if type(error).__name__ in DIED else "failed"
            reason = f"its Ray worker died ({type(error).__name__}: {first_line(error)})"
        _record_end(run_dir(run_id, root), state, reason)

    def _stop(self, in_flight: dict[Any, str], root: Path) -> None:
        """Ctrl-C: cancel the trials still waiting, ask the running ones to stop, wait a while,
        then cancel what still runs (it would die with the driver anyway)."""
        for ref, run_id in in_flight.items():
            folder = run_dir(run_id, root)
            with contextlib.suppress(OSError, ValueError):
                if _cancel_claim(folder):
                    self.ray.cancel(ref)
                else:
                    request_stop(folder)
        refs = list(in_flight)
        ready, late = self.ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_SECONDS)
        for ref in ready:
            self._settle(in_flight[ref], ref, root)
        for ref in late:
            self.ray.cancel(ref, force=True)
            reason = (
                "the sweep was interrupted; its Ray task did not stop in time and was cancelled"
            )
            _record_end(run_dir(in_flight[ref], root), "interrupted", reason)


def _runtime_env() -> dict[str, Any]:
    """The kdcore package itself travels to every worker (the nodes need only its requirements)."""
    package = Path(__file__).resolve().parent
    return {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]}


def _record_end(folder: Path, state: str, reason: str) -> None:
    """What the driver concluded, for a run whose own process could not say (as the local
    queue does for a child that died)."""
    with contextlib.suppress(OSError, ValueError):
        status = read_status(folder)
        if status.active:
            ended = status.replace(state=state, phase=state, error=reason, ended_at=time.time())
            write_status(folder, ended)


def _keep_claims(run_ids, root: Path) -> None:
    """A claimed run whose task waits for a free worker keeps a fresh heartbeat (ours), so
    watchers do not take it for interrupted."""
    for run_id in run_ids:
        folder = run_dir(run_id, root)
        with contextlib.suppress(OSError, ValueError):
            status = read_status(folder)
            ours = status.phase == "starting" and status.pid == os.getpid()
            if ours and time.time() - (status.heartbeat or 0) > CLAIM_REFRESH_SECONDS:
                write_status(folder, status.replace(heartbeat=time.time()))


def _cancel_claim(folder: Path) -> bool:
    """A claimed run not yet picked up by a worker is stopped; False when it trains already."""
    status = read_status(folder)
    if status.phase != "starting" or status.pid != os.getpid():
        return False
    write_status(folder, _cancelled(status))
    return True


def _cancelled(status: RunStatus) -> RunStatus:
    return status.replace(
        state="stopped", phase="stopped", error="cancelled before it started", ended_at=time.time()
    )


# --- what runs on the workers ------------------------------------------------------------------


def train_trial(run_id: str, root: str, threads: int, cwd: str) -> str:
    """One Ray task: train a claimed run folder with `execute_run`; returns its final state.

    Torch gets the task's CPUs as threads, and the GPU Ray assigned (CUDA_VISIBLE_DEVICES is set
    to it, so it is "cuda"), or the CPU when the trial asked for none.
    """
    import ray
    import torch

    from kdcore.execute import execute_run

    if os.path.isdir(cwd):  # relative data and teacher paths resolve as on the driver
        os.chdir(cwd)
    folder = run_dir(run_id, Path(root))
    status = read_status(folder)
    if status.phase == "starting" and stop_requested_at(folder) is not None:
        write_status(folder, _cancelled(status))  # stopped while it waited for a worker
        return "stopped"
    torch.set_num_threads(threads)
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    return execute_run(run_id, Path(root), device=device).status
