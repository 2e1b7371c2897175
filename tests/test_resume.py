"""A stopped, interrupted or failed run continues after its last whole epoch, and a seeded run
resumed that way ends with exactly the weights and rows of one that was never interrupted."""

from __future__ import annotations

import threading

import pytest
import torch

from kdcore.batch_log import BATCH_LOG, BatchLogTail
from kdcore.checkpoints import read_checkpoint
from kdcore.cli import main
from kdcore.engine import Callback
from kdcore.execute import execute_run, resume_run
from kdcore.runs import RunError, RunSpec, create_run, load_run, read_metrics
from kdcore.status import RunStatus, read_status, write_status

TINY = {"data": "synthetic", "epochs": 3, "train_subset": 128, "batch_size": 32}
SAME_IN_EVERY_RUN = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")


class StopAt(Callback):
    """Sets the stop event at batch `batch` of epoch `epoch`."""

    def __init__(self, stop: threading.Event, epoch: int, batch: int) -> None:
        self.stop, self.epoch, self.batch = stop, epoch, batch

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if logs["epoch"] == self.epoch and logs["batch"] == self.batch:
            self.stop.set()


def stopped_run(root, spec: RunSpec, epoch: int, batch: int = 2) -> str:
    run_id = create_run(spec, root)
    stop = threading.Event()
    result = execute_run(run_id, root, [StopAt(stop, epoch, batch)], stop_event=stop)
    assert result.status == "stopped"
    return run_id


def weights(root, run_id: str) -> dict[str, torch.Tensor]:
    return read_checkpoint(root / run_id / "last.pt")["state_dict"]


def rows(root, run_id: str) -> list[dict[str, float]]:
    return [{k: row[k] for k in SAME_IN_EVERY_RUN} for row in read_metrics(root / run_id)]


@pytest.fixture(params=["student", "distill", "student with muon"])
def spec(request, teacher_file) -> RunSpec:
    if request.param == "student with muon":  # Muon's momentum buffers resume too
        return RunSpec(role="student", optimizer="muon", **TINY)
    if request.param == "distill":
        return RunSpec(role="distill", teacher=str(teacher_file), temperature=4, alpha=0.9, **TINY)
    return RunSpec(role="student", **TINY)


def test_a_resumed_seeded_run_ends_exactly_like_an_unbroken_one(tmp_path, fast_synthetic, spec):
    unbroken = create_run(spec, tmp_path)
    execute_run(unbroken, tmp_path)
    resumed = stopped_run(tmp_path, spec, epoch=2)
    state = read_checkpoint(tmp_path / resumed / "last.pt")["train_state"]
    assert len(state["history"]) == 1  # last.pt is the end of epoch 1, not the stop mid-epoch 2

    assert resume_run(resumed, tmp_path) == 1
    assert read_status(tmp_path / resumed).state == "queued"
    assert execute_run(resumed, tmp_path).status == "finished"

    assert rows(tmp_path, resumed) == rows(tmp_path, unbroken)
    first, second = weights(tmp_path, unbroken), weights(tmp_path, resumed)
    assert all(torch.equal(first[name], second[name]) for name in first)
    steps = [
        int(line.split(",")[0]) for line in (tmp_path / resumed / BATCH_LOG).read_text().split()
    ]
    assert steps == list(range(1, 3 * 4 + 1))  # every batch once: the repeated ones were dropped
    assert load_run(resumed, tmp_path).status == "finished"
    assert "train_state" not in read_checkpoint(tmp_path / resumed / "last.pt")  # finished


@pytest.mark.parametrize("state", ["interrupted", "failed"])
def test_an_interrupted_or_failed_run_resumes_too(tmp_path, fast_synthetic, state):
    spec = RunSpec(role="student", **TINY)
    run_id = stopped_run(tmp_path, spec, epoch=3)
    write_status(tmp_path / run_id, RunStatus(state=state, error="killed by SIGKILL"))
    assert resume_run(run_id, tmp_path) == 2
    assert read_status(tmp_path / run_id).phase == "queued to resume after epoch 2"
    assert execute_run(run_id, tmp_path).status == "finished"
    assert [row["epoch"] for row in read_metrics(tmp_path / run_id)] == [1, 2, 3]


def test_a_run_stopped_before_its_first_epoch_ended_starts_over(tmp_path, fast_synthetic):
    run_id = stopped_run(tmp_path, RunSpec(role="student", **TINY), epoch=1)
    assert not (tmp_path / run_id / "last.pt").exists()
    assert resume_run(run_id, tmp_path) == 0
    assert execute_run(run_id, tmp_path).status == "finished"
    assert [row["epoch"] for row in read_metrics(tmp_path / run_id)] == [1, 2, 3]
    steps = (tmp_path / run_id / BATCH_LOG).read_text().split()
    assert len(steps) == len(set(steps)) == 12


@pytest.mark.parametrize("state", ["queued", "finished"])
def test_only_a_run_that_ended_early_resumes(tmp_path, state):
    run_id = create_run(RunSpec(role="student", **TINY), tmp_path)
    write_status(tmp_path / run_id, RunStatus(state=state))
    with pytest.raises(RunError, match=f"is {state}; only a stopped or interrupted or failed"):
        resume_run(run_id, tmp_path)


def test_the_cli_resumes_a_stopped_run(tmp_path, fast_synthetic, capsys):
    run_id = stopped_run(tmp_path, RunSpec(role="student", **TINY), epoch=2)
    assert main(["resume", run_id, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "resuming after epoch 1" in captured.err and '"status": "finished"' in captured.out


def test_a_tail_starts_over_when_the_batch_log_is_replaced(tmp_path):
    log = tmp_path / BATCH_LOG
    log.write_text("1,1,2.0\n2,1,1.5\n3,2,1.2\n")
    tail = BatchLogTail(tmp_path)
    assert [point["step"] for point in tail.read()] == [1, 2, 3]
    replacement = tmp_path / "new.csv"
    replacement.write_text("1,1,2.0\n2,1,1.5\n")
    replacement.replace(log)  # what a resumed run does with the repeated epoch's batches
    with open(log, "a") as file:
        file.write("3,2,1.1\n")
    assert [(point["step"], point["loss"]) for point in tail.read()] == [
        (1, 2.0),
        (2, 1.5),
        (3, 1.1),
    ]
