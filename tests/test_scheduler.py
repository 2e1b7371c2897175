"""The run queue: runs as processes of their own, stop requests, SIGTERM, kill -9, crashes.

Every run here is a real `python -m kdcore execute` process on the synthetic set, as the
dashboard starts them; each costs a few seconds of interpreter start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kdcore.scheduler as scheduler_module
from kdcore.checkpoints import load_model
from kdcore.runs import RunError, RunSpec, create_run, load_run, read_metrics, request_stop
from kdcore.scheduler import RunQueue
from kdcore.status import RunStatus, read_status, this_process, write_status

REPO = Path(__file__).resolve().parents[1]
QUICK = {"role": "student", "data": "synthetic", "batch_size": 64}


def quick(epochs: int = 1, subset: int = 256, **fields) -> RunSpec:
    return RunSpec(**{**QUICK, "epochs": epochs, "train_subset": subset, **fields})


def long_run(**fields) -> RunSpec:
    """Trains for minutes unless stopped: for stop, kill and crash tests."""
    return quick(epochs=500, subset=1024, **fields)


def wait_for(condition, what: str, timeout: float = 60.0, queue: RunQueue | None = None):
    deadline = time.monotonic() + timeout
    while True:
        if queue is not None:
            queue.tick()
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def training(queue: RunQueue, run_id: str):
    """The run's record once its process has trained a few batches."""
    record = queue.run(run_id)
    return record if record.status == "running" and record.run_status.step >= 3 else None


def assert_consistent(folder: Path) -> None:
    """What a run leaves however it ends: whole metric lines, weights that load."""
    lines = (folder / "metrics.jsonl").read_text().splitlines() if read_metrics(folder) else []
    assert [json.loads(line) for line in lines] == read_metrics(folder)
    if (folder / "last.pt").exists():
        load_model(folder / "last.pt")


def test_queued_runs_train_one_after_another_in_their_own_processes(tmp_path):
    queue = RunQueue(tmp_path, max_running=1)
    first, second = queue.submit(quick()), queue.submit(quick(seed=1))
    assert queue.run(second).status == "queued"
    done = {run_id: queue.wait(run_id, timeout=120) for run_id in (second, first)}
    assert {record.status for record in done.values()} == {"finished"}
    one, two = done[first].run_status, done[second].run_status
    assert one.ended_at <= two.started_at  # max_running=1: never both at once
    assert len({one.pid, two.pid, os.getpid()}) == 3
    assert one.step == one.total_steps == 4  # 256 images in batches of 64
    assert "finished" in (tmp_path / first / "output.log").read_text()


def test_a_queued_run_is_cancelled_and_a_running_one_stops_on_request(tmp_path):
    queue = RunQueue(tmp_path, max_running=1)
    running, waiting = queue.submit(long_run()), queue.submit(quick())
    queue.stop(waiting)
    cancelled = queue.run(waiting)
    assert cancelled.status == "stopped" and "cancelled" in cancelled.run_status.error
    wait_for(lambda: training(queue, running), "the first run to train", queue=queue)
    queue.stop(running)
    stopped = queue.wait(running, timeout=60)
    assert stopped.status == "stopped" and not stopped.run_status.error
    assert_consistent(stopped.folder)
    assert not (tmp_path / waiting / "metrics.jsonl").exists()  # never started
    with pytest.raises(RunError, match="nothing to stop"):
        queue.stop(running)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's scheduling classes")
def test_a_run_trains_in_a_session_of_its_own_and_yields_the_cpu(tmp_path):
    queue = RunQueue(tmp_path, max_running=1)
    run_id = queue.submit(long_run())
    pid = wait_for(lambda: training(queue, run_id), "the run to train", queue=queue).run_status.pid
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        assert len(threads) >= 1
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_IDLE}
        assert os.getpriority(os.PRIO_PROCESS, pid) >= scheduler_module.RUN_NICENESS
        assert os.getsid(pid) == pid != os.getsid(0)
    finally:
        queue.stop(run_id)
        queue.wait(run_id, timeout=60)


def test_sigterm_stops_a_run_cleanly(tmp_path):
    queue = RunQueue(tmp_path, max_running=1)
    run_id = queue.submit(long_run())
    record = wait_for(lambda: training(queue, run_id), "the run to train", queue=queue)
    os.kill(record.run_status.pid, signal.SIGTERM)
    stopped = queue.wait(run_id, timeout=60)
    assert stopped.status == "stopped"
    assert_consistent(stopped.folder)


def test_a_run_that_ignores_its_stop_request_gets_sigterm(tmp_path, monkeypatch):
    queue = RunQueue(tmp_path, max_running=1)
    run_id = create_run(quick(), tmp_path)
    deaf = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = {**this_process(), "pid": deaf.pid}
        write_status(tmp_path / run_id, RunStatus(state="running", phase="epoch 1/1", **process))
        request_stop(tmp_path / run_id)
        monkeypatch.setattr(scheduler_module, "STOP_GRACE_SECONDS", 0.0)
        queue.tick()
        assert deaf.wait(timeout=10) == -signal.SIGTERM
    finally:
        deaf.kill()


def test_a_run_killed_with_sigkill_is_reported_interrupted_with_the_reason(tmp_path):
    queue = RunQueue(tmp_path, max_running=1)
    run_id = queue.submit(long_run())
    record = wait_for(lambda: training(queue, run_id), "the run to train", queue=queue)
    os.kill(record.run_status.pid, signal.SIGKILL)
    # whoever looks (not only the queue that started it) sees it within seconds
    seen = wait_for(
        lambda: RunQueue(tmp_path, max_running=1).run(run_id).status == "interrupted",
        "an observer to see the run interrupted",
        timeout=10,
    )
    assert seen
    # the queue that started it reaps it and records how it ended
    status = wait_for(
        lambda: (s := read_status(tmp_path / run_id)).state == "interrupted" and s,
        "the queue to record the kill",
        queue=queue,
    )
    assert "SIGKILL" in status.error
    assert_consistent(tmp_path / run_id)


def test_a_crashing_run_fails_alone_while_the_run_beside_it_finishes(tmp_path, image_folder):
    queue = RunQueue(tmp_path / "runs", max_running=2)
    doomed = queue.submit(quick(data=str(image_folder), train_subset=None))
    shutil.rmtree(image_folder)  # its data vanishes after it was queued
    healthy = queue.submit(quick(epochs=2))
    failed = queue.wait(doomed, timeout=120)
    assert failed.status == "failed" and "does not exist" in failed.run_status.error
    assert queue.wait(healthy, timeout=120).status == "finished"


def test_a_run_started_from_the_cli_is_watched_and_stopped_like_any_other(tmp_path):
    command = [sys.executable, "-m", "kdcore", "student", "--data-dir", "synthetic",
               "--epochs", "500", "--train-subset", "1024", "--batch-size", "64",
               "--out", str(tmp_path)]  # fmt: skip
    cli = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    queue = RunQueue(tmp_path, max_running=1)
    (run_id,) = wait_for(lambda: [r.run_id for r in queue.runs()], "the CLI to create its run")
    record = wait_for(lambda: training(queue, run_id), "the CLI run to train")
    assert record.run_status.pid == cli.pid and record.run_status.phase.startswith("epoch")
    queue.stop(run_id)
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 1 and json.loads(out)["status"] == "stopped"
    assert load_run(run_id, tmp_path).status == "stopped"


def test_execute_refuses_a_run_that_is_not_queued(tmp_path):
    queue = RunQueue(tmp_path, max_running=1)
    run_id = queue.submit(quick())
    queue.wait(run_id, timeout=120)
    command = [sys.executable, "-m", "kdcore", "execute", run_id, "--out", str(tmp_path)]
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "is finished; only a queued run" in again.stderr


def test_a_queued_folder_is_started_by_whichever_queue_looks_next(tmp_path):
    run_id = create_run(quick(), tmp_path)  # queued by a dashboard that then went away
    assert RunQueue(tmp_path, max_running=1).wait(run_id, timeout=120).status == "finished"
