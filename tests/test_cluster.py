"""Sweeps on Ray: trials as Ray tasks on a local 2-CPU Ray give the local queue's results; a dead
worker is recorded; an address that does not answer, storage a node cannot see, a trial no node
fits and a missing ray package are refused clearly, before any run exists."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from kdcore.cli import main
from kdcore.evaluation import read_evaluation
from kdcore.runs import RunSpec, create_run, list_runs, read_metrics, run_dir
from kdcore.status import read_status
from kdcore.sweep import SweepError, SweepSpec, sweep_dir

TRAINING = ["--data-dir", "synthetic", "--epochs", "1", "--train-subset", "256",
            "--batch-size", "64"]  # fmt: skip
GRID = ["-T", "1", "4", "--alpha", "0.5", "--seeds", "0", "--no-baseline"]  # 2 (T) x 1 (alpha)
TIMING = ("images_per_s", "epoch_s", "elapsed_s", "eta_s")  # the only fields allowed to differ
REPORT = ("test_acc", "agreement", "kl_teacher_student", "ece", "nll", "confusion")


@pytest.fixture(scope="module")
def ray_executor():
    """A local Ray with 2 CPUs for the whole module, shut down after it; sweeps in this process
    join it instead of starting their own."""
    pytest.importorskip("ray")
    from kdcore.cluster import RayExecutor

    with RayExecutor(local_cpus=2) as executor:
        yield executor


@pytest.fixture
def sweep_folder(make_teacher_checkpoint):
    """`sweep_folder(folder) -> (runs folder, teacher)`: a teacher of its own, so its own cache."""

    def make(folder: Path) -> tuple[Path, Path]:
        return folder / "checkpoints", make_teacher_checkpoint(folder / "teacher" / "teacher.pt")

    return make


def sweep(root: Path, teacher: Path, *flags: str) -> list[str]:
    return ["sweep", "--teacher", str(teacher), *GRID, *TRAINING, "--out", str(root), *flags]


def trial_results(root: Path, trials: dict[str, str]) -> dict[str, dict]:
    """Per trial: its epoch rows without timings, and its test metrics."""
    results = {}
    for key, run_id in trials.items():
        folder = run_dir(run_id, root)
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(folder)]
        report = read_evaluation(folder)
        results[key] = {"rows": rows, **{metric: report[metric] for metric in REPORT}}
    return results


def assert_nothing_created(root: Path) -> None:
    assert list_runs(root) == []
    assert not (root / "sweeps").exists()
    assert not root.exists() or not any(root.glob(".kdcore-storage-check-*"))


def test_a_sweep_on_ray_equals_the_local_queues(
    ray_executor, tmp_path, monkeypatch, capsys, sweep_folder
):
    # one torch thread per trial on both sides: 2 trials side by side on 2 CPUs, here and in Ray
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    summaries = {}
    for executor in ("local", "ray"):
        root, teacher = sweep_folder(tmp_path / executor)
        flags = ["--parallel", "2"] if executor == "local" else ["--executor", "ray"]
        assert main(sweep(root, teacher, *flags)) == 0
        summaries[executor] = (root, json.loads(capsys.readouterr().out.splitlines()[-1]))
    (local_root, local), (ray_root, on_ray) = summaries["local"], summaries["ray"]
    assert local["failed"] == on_ray["failed"] == {}
    assert set(on_ray["trials"]) == {"T1-a0.5-s0", "T4-a0.5-s0"}
    assert trial_results(ray_root, on_ray["trials"]) == trial_results(local_root, local["trials"])
    assert on_ray["cells"] == local["cells"]
    statuses = [read_status(run_dir(run_id, ray_root)) for run_id in on_ray["trials"].values()]
    assert all(status.pid != os.getpid() for status in statuses)  # trained in Ray's workers
    # the two trials of seed 0 ran side by side and the teacher's pass still ran once
    assert sorted(s.teacher_cache["epochs_computed"] for s in statuses) == [0, 1]


def test_a_trial_whose_ray_worker_dies_is_recorded_interrupted_and_not_retried(
    ray_executor, tmp_path
):
    root = tmp_path / "checkpoints"
    spec = RunSpec(role="student", data="synthetic", epochs=50, train_subset=256, batch_size=64)
    run_id = create_run(spec, root)
    killed = []

    def kill_its_worker(records) -> None:
        status = records[0].run_status
        if not killed and status.state == "running" and status.pid not in (None, os.getpid()):
            os.kill(status.pid, signal.SIGKILL)  # the Ray worker that claimed the run
            killed.append(status.pid)

    [record] = ray_executor.run_trials(
        [run_id], root, on_progress=kill_its_worker, poll_seconds=0.1
    )
    assert killed and record.status == "interrupted"
    assert "Ray worker died" in record.run_status.error
    assert read_status(record.folder).state == "interrupted"  # written down, not only observed
    assert len(record.metrics) < spec.epochs


def test_storage_a_node_cannot_see_is_refused_before_any_run(
    ray_executor, tmp_path, monkeypatch, capsys, sweep_folder
):
    import kdcore.cluster_checks

    root, teacher = sweep_folder(tmp_path)
    # the node reads the token at the runs folder's path and finds nothing, as on a node where
    # that path is a local folder and not the shared one
    monkeypatch.setattr(kdcore.cluster_checks, "_write_token", lambda path, token: None)
    assert main(sweep(root, teacher, "--executor", "ray")) == 2
    error = capsys.readouterr().err
    assert "storage every Ray node sees" in error and socket.gethostname() in error
    assert str(root.resolve() / ".kdcore-storage-check-") in error
    assert_nothing_created(root)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "ray", "--trial-cpus", "64"], "can run a trial asking for 64 CPUs"),
        (["--executor", "ray", "--trial-gpus", "64"], "64 GPUs"),
        (["--executor", "ray", "-T", "0"], "Temperature T must be greater than 0"),
        (["--executor", "ray", "--alpha", "1.5"], "alpha weighs the soft term"),
        (["--ray-address", "HEAD:6379"], "need --executor ray"),
    ],
)
def test_a_sweep_ray_cannot_run_is_refused_before_any_run(
    ray_executor, tmp_path, capsys, sweep_folder, flags, message
):
    root, teacher = sweep_folder(tmp_path)
    assert main(sweep(root, teacher, *flags)) == 2
    assert message in capsys.readouterr().err
    assert_nothing_created(root)


def test_a_corrupt_sweep_folder_is_refused_before_ray_is_asked(tmp_path, sweep_folder):
    pytest.importorskip("ray")
    from kdcore.cluster import ray_trials

    root, teacher = sweep_folder(tmp_path)
    spec = SweepSpec(str(teacher), (1.0, 4.0), (0.5,), (0,), baseline=False)
    folder = sweep_dir(spec.sweep_id, root)
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text('{"id": ')
    with pytest.raises(SweepError, match="corrupt"), ray_trials(spec, root, "127.0.0.1:1"):
        pass  # the address is never tried: the sweep folder is checked first
    assert list_runs(root) == []


def test_an_address_that_does_not_answer_is_refused_within_30_s(tmp_path, capsys, sweep_folder):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root, teacher = sweep_folder(tmp_path)
    started = time.monotonic()
    code = main(sweep(root, teacher, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"))
    assert code == 2 and time.monotonic() - started < 30
    assert f"The Ray cluster at 127.0.0.1:{port} does not answer" in capsys.readouterr().err
    assert_nothing_created(root)


def test_a_listener_that_is_not_ray_is_refused_without_hanging(monkeypatch):
    pytest.importorskip("ray")
    from kdcore import cluster_checks

    monkeypatch.setattr(cluster_checks, "HANDSHAKE_SECONDS", 4.0)
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(cluster_checks.ClusterError, match="no Ray driver could join it"):
            cluster_checks.check_answers(address)
    assert time.monotonic() - started < 15


def test_without_the_ray_package_the_message_says_how_to_install_it(
    tmp_path, monkeypatch, capsys, sweep_folder
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    root, teacher = sweep_folder(tmp_path)
    assert main(sweep(root, teacher, "--executor", "ray")) == 2
    assert "pip install -r requirements-cluster.txt" in capsys.readouterr().err
    assert_nothing_created(root)


@pytest.mark.parametrize(
    ("address", "host_port"),
    [
        ("HEAD:6379", ("HEAD", 6379)),
        ("10.0.0.5", ("10.0.0.5", 6379)),
        ("ray://HEAD:10001", ("HEAD", 10001)),
        ("ray://HEAD", ("HEAD", 10001)),
        ("[::1]:6380", ("::1", 6380)),
        ("auto", None),
    ],
)
def test_addresses_are_read_as_host_and_port(address, host_port):
    from kdcore.cluster_checks import host_port as read

    assert read(address) == host_port
