"""status.json: one versioned schema; old, newer and corrupt files; what an observer concludes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from kdcore.status import (
    STALE_AFTER_SECONDS,
    STATUS_VERSION,
    RunStatus,
    StatusError,
    process_alive,
    read_status,
    this_process,
    write_status,
)


def test_a_status_round_trips_through_its_file(tmp_path):
    status = RunStatus(
        state="running",
        phase="teacher outputs 3/10",
        epoch=2,
        epochs=10,
        step=40,
        total_steps=200,
        images_per_s=1234.5,
        teacher_cache={"epochs_computed": 1},
        **this_process(started_at=time.time()),
    )
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status
    saved = json.loads((tmp_path / "status.json").read_text())
    assert saved["version"] == STATUS_VERSION and saved["state"] == "running"
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then replaced


def test_a_file_from_before_the_schema_is_read_with_its_state_and_results(tmp_path):
    legacy = {"status": "finished", "pid": 12, "updated_at": 5.0, "started_at": 1.0,
              "ended_at": 5.0, "epochs_done": 10, "best_test_acc": 0.8}  # fmt: skip
    (tmp_path / "status.json").write_text(json.dumps(legacy))
    status = read_status(tmp_path)
    assert (status.state, status.epochs_done, status.best_test_acc) == ("finished", 10, 0.8)
    assert status.heartbeat == 5.0 and status.version == STATUS_VERSION


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "corrupt: not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"version": 1, "state": "dancing"}', "unknown state 'dancing'"),
        ('{"version": 99, "state": "running"}', "newer kdcore \\(version 99"),
        ('{"pid": 3}', "neither a version nor a known status"),
        ('{"version": 1, "state": "queued", "epoch": 1, "epochs": 2, "step": 0, "x": 1}', None),
    ],
)
def test_unreadable_files_give_a_clear_error(tmp_path, content, message):
    (tmp_path / "status.json").write_text(content)
    if message is None:  # unknown keys (from a newer minor change) are ignored
        assert read_status(tmp_path).state == "queued"
        return
    with pytest.raises(StatusError, match=message) as error:
        read_status(tmp_path)
    assert str(tmp_path / "status.json") in str(error.value)


def test_a_missing_file_is_a_status_error(tmp_path):
    with pytest.raises(StatusError, match="missing"):
        read_status(tmp_path)


def ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_running_means_a_live_process_with_a_fresh_heartbeat():
    now = time.time()
    alive = RunStatus(state="running", **this_process())
    assert alive.observed(now).state == "running"
    gone = alive.replace(pid=ended_pid()).observed(now)
    assert gone.state == "interrupted" and "ended without recording why" in gone.error
    silent = alive.observed(now + STALE_AFTER_SECONDS + 1)
    assert silent.state == "interrupted" and "stopped reporting" in silent.error
    elsewhere = alive.replace(pid=ended_pid(), host="another-machine").observed(now)
    assert elsewhere.state == "running"  # another host's pid cannot be checked; its heartbeat can
    finished = RunStatus(state="finished", pid=ended_pid())
    assert finished.observed(now) == finished


def test_a_zombie_process_counts_as_ended():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while process_alive(child.pid):  # exited, not yet reaped: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(child.pid, 0)  # the pid still exists until it is reaped
    child.wait()


def test_the_eta_counts_down_between_updates_and_never_below_zero():
    status = RunStatus(state="running", eta_s=60.0, eta_at=1000.0)
    assert status.eta_remaining(now=1000.0) == 60.0
    assert status.eta_remaining(now=1045.0) == 15.0  # e.g. while the test split is evaluated
    assert status.eta_remaining(now=2000.0) == 0.0
    assert RunStatus(state="running").eta_remaining() is None
