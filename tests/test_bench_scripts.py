"""The benchmark scripts run end to end on tiny data and report what they trained."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from kdcore.cli import main as cli_main
from kdcore.runs import load_run, recorded_train_config

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_distill_gain_reports_means_and_gains_and_reuses_its_runs(
    tmp_path, capsys, monkeypatch, fast_synthetic
):
    out = tmp_path / "runs"
    teacher_args = [
        "teacher",
        "--arch",
        "cifarnet",
        "--data-dir",
        "synthetic",
        "--epochs",
        "1",
        "--train-subset",
        "300",
        "--batch-size",
        "64",
        "--out",
        str(out),
    ]
    assert cli_main(teacher_args) == 0
    teacher = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    distill_gain = load_script("distill_gain")
    argv = [
        "distill_gain.py",
        "--data-dir",
        "synthetic",
        "--teacher",
        teacher,
        "--out",
        str(out),
        "--seeds",
        "0",
        "1",
        "--epochs",
        "1",
        "-T",
        "2",
        "--alpha",
        "0.5",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    assert distill_gain.main() == 0
    summary = json.loads(capsys.readouterr().out)
    setting = "T=2 alpha=0.5 hard-term label smoothing 0.1"
    assert set(summary) == {"alone", setting}
    alone, distilled = summary["alone"], summary[setting]
    assert len(alone["test_acc"]) == len(distilled["test_acc"]) == 2  # one per seed
    assert distilled["mean"] == round(statistics.mean(distilled["test_acc"]), 4)
    assert distilled["gain_over_alone"] == round(distilled["mean"] - alone["mean"], 4)
    runs = sorted(path.name for path in out.iterdir() if path.is_dir())
    assert len(runs) == 1 + 2 * 2  # the teacher, then two runs per seed

    assert distill_gain.main() == 0  # run again: every run is reused, nothing trains
    assert json.loads(capsys.readouterr().out) == summary
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == runs

    monkeypatch.setattr(sys, "argv", [*argv, "--lr", "0.02"])  # another lr: new runs, all at it
    assert distill_gain.main() == 0
    capsys.readouterr()
    new_runs = [path for path in out.iterdir() if path.is_dir() and path.name not in runs]
    assert len(new_runs) == 2 * 2
    assert {load_run(path.name, out).spec.lr for path in new_runs} == {0.02}

    from kdcore import recipes  # a recipe changed since: the runs made by the old one are stale

    monkeypatch.setitem(recipes.STUDENT_RECIPE, "lr", 0.03)
    monkeypatch.setitem(recipes.DISTILL_RECIPE, "lr", 0.03)
    monkeypatch.setattr(sys, "argv", argv)
    before = {path.name for path in out.iterdir() if path.is_dir()}
    assert distill_gain.main() == 0
    retrained = [path for path in out.iterdir() if path.is_dir() and path.name not in before]
    assert len(retrained) == 2 * 2
    assert {
        recorded_train_config(path, load_run(path.name, out).spec).lr for path in retrained
    } == {0.03}


def test_cifarnet_recipes_trains_a_variant_and_reports_val_and_tta(tmp_path, capsys, monkeypatch):
    recipes = load_script("cifarnet_recipes")
    out = tmp_path / "recipes.jsonl"
    argv = ["cifarnet_recipes.py", "--data-dir", "synthetic", "--epochs", "1", "--val-split",
            "500", "--recipe", "label smoothing 0.2, BatchNorm shifts without decay", "--out",
            str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    built = []
    real_build = recipes.engine.build_optimizer
    monkeypatch.setattr(
        recipes.engine, "build_optimizer", lambda *a: built.append(1) or real_build(*a)
    )
    assert recipes.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    epoch_row, summary = json.loads(lines[0]), json.loads(lines[-1])
    assert {"val_acc", "val_acc_tta", "test_acc_tta"} <= set(epoch_row)
    assert summary["recipe"] == "label smoothing 0.2, BatchNorm shifts without decay"
    assert summary["val_split"] == 500 and summary["changes"]["label_smoothing"] == 0.2
    assert 0 <= summary["val_acc"] <= 1 and 0 <= summary["val_acc_tta"] <= 1
    assert json.loads(out.read_text()) == summary
    assert built == [1]
    optimizer = recipes._with_shift_decay(real_build, 0.0)(
        recipes.CifarNet(10), recipes.RunSpec(role="teacher", arch="cifarnet").train_config()
    )
    decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
    assert decays[0] == 0.0 and decays[-1] > 0  # the shifts lose their decay, the rest keep it


def test_teacher_views_reports_the_teachers_accuracy_on_the_distillation_views_and_caches_them(
    tmp_path, capsys, monkeypatch, synthetic_train
):
    from kdcore.augment import epoch_views, train_batch
    from kdcore.checkpoints import load_model
    from kdcore.engine import autocast_for
    from kdcore.runs import teacher_checkpoint

    out = tmp_path / "runs"
    teacher_args = ["teacher", "--arch", "cifarnet", "--data-dir", "synthetic", "--epochs", "1",
                    "--train-subset", "300", "--out", str(out)]  # fmt: skip
    assert cli_main(teacher_args) == 0
    teacher = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    teacher_views = load_script("teacher_views")
    train = synthetic_train.subset(400, seed=1)
    monkeypatch.setattr(teacher_views, "load_split", lambda source, split: train)
    argv = ["teacher_views.py", "--data-dir", "synthetic", "--teacher", teacher, "--out", str(out),
            "--epochs", "2", "--seed", "3"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)

    assert teacher_views.main() == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model, _ = load_model(teacher_checkpoint(teacher, out))
    with torch.inference_mode():
        for epoch, reported in enumerate(first["view_acc_per_epoch"]):
            views = train_batch(train.images, epoch_views(len(train), 3, epoch))
            with autocast_for(torch.device("cpu")):
                right = (model(views).argmax(1) == train.labels).float().mean().item()
            assert reported == pytest.approx(right, abs=1e-4)  # the study's views, this seed's
    assert first["view_acc"] == pytest.approx(statistics.mean(first["view_acc_per_epoch"]), 1e-3)
    assert first["test_acc"] == load_run(teacher, out).final_test_acc
    assert first["epochs_computed"] == 2 and first["epochs_from_cache"] == 0

    assert teacher_views.main() == 0  # again: the outputs come from the cache distillation reads
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["epochs_from_cache"] == 2 and again["epochs_computed"] == 0
    assert again["view_acc_per_epoch"] == first["view_acc_per_epoch"]


def test_ui_latency_counts_the_cpu_of_its_process_group_only_and_none_while_stopped():
    ui_latency = load_script("ui_latency")
    busy = "while True: pass"
    spinner = subprocess.Popen([sys.executable, "-c", busy], start_new_session=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               start_new_session=True)  # fmt: skip
    try:
        time.sleep(0.5)
        before = ui_latency.group_cpu_seconds(spinner.pid)
        asleep = ui_latency.group_cpu_seconds(sleeper.pid)
        time.sleep(1.0)
        assert ui_latency.group_cpu_seconds(spinner.pid) - before > 0.2
        assert ui_latency.group_cpu_seconds(sleeper.pid) - asleep < 0.05
        os.killpg(spinner.pid, signal.SIGSTOP)
        time.sleep(0.2)
        stopped = ui_latency.group_cpu_seconds(spinner.pid)
        time.sleep(0.5)
        assert ui_latency.group_cpu_seconds(spinner.pid) == stopped
    finally:
        for child in (spinner, sleeper):
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def test_ui_latency_ratio_interval_brackets_the_ratio_of_medians():
    ui_latency = load_script("ui_latency")
    paused = [0.40, 0.42, 0.44, 0.46, 0.48] * 6
    low, high = ui_latency.ratio_interval(paused[::-1], paused)
    assert low < 1.0 < high
    low, high = ui_latency.ratio_interval([1.5 * t for t in paused], paused)
    assert 1.0 < low <= 1.5 <= high
    assert ui_latency.ratio_interval([1.0] * 5, [2.0] * 5) == (0.5, 0.5)


def test_cifarnet_recipes_airbench_schedule_runs_piecewise_linear_at_a_held_momentum(
    capsys, monkeypatch
):
    recipes = load_script("cifarnet_recipes")
    monkeypatch.setattr(recipes.engine, "build_scheduler", recipes.engine.build_scheduler)  # undo
    argv = ["cifarnet_recipes.py", "--data-dir", "synthetic", "--epochs", "1", "--val-split",
            "500", "--recipe", "airbench schedule"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert recipes.main() == 0 and recipes.engine.build_scheduler is recipes._airbench_schedule
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["changes"] == {"momentum": 0.85, "lr_schedule": "airbench"}
    config = recipes.RunSpec(role="teacher", arch="cifarnet", epochs=1).train_config()
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=config.lr, momentum=0.85)
    scheduler = recipes._airbench_schedule(optimizer, config, steps_per_epoch=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"] / config.lr)
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.2) and max(lrs) == pytest.approx(1.0) == lrs[23]
    assert lrs[-1] == pytest.approx(1 - 0.93 * 76 / 77)
    assert optimizer.param_groups[0]["momentum"] == 0.85


def test_cifarnet_recipes_measures_a_recipes_speed_against_the_default(capsys, monkeypatch):
    recipes = load_script("cifarnet_recipes")
    argv = ["cifarnet_recipes.py", "--data-dir", "synthetic", "--recipe", "sgd", "--throughput",
            "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    optimisers = []
    real_build = recipes.engine.build_optimizer
    monkeypatch.setattr(
        recipes.engine,
        "build_optimizer",
        lambda *a: optimisers.append(type(o := real_build(*a)).__name__) or o,
    )
    assert recipes.main() == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["images_per_s"]) == {"default", "sgd"}
    assert all(value > 0 for value in summary["images_per_s"].values())
    ratio = summary["images_per_s"]["sgd"] / summary["images_per_s"]["default"]
    assert summary["ratio"] == pytest.approx(ratio, abs=1e-3)
    assert optimisers == ["MuonSGD", "MuonSGD", "SGD", "SGD"] * 2  # warm-up and timed, twice


def test_compile_speed_times_the_compiled_engine_against_the_plain_one(capsys, monkeypatch):
    from kdcore import engine

    compile_speed = load_script("compile_speed")
    monkeypatch.setenv("KDCORE_COMPILE", "off")  # restored after the script sets its own
    compiled = []
    real_forward = engine.training_forward
    monkeypatch.setattr(
        engine,
        "training_forward",
        lambda model, device: compiled.append((f := real_forward(model, device)) is not model) or f,
    )
    argv = ["--data-dir", "synthetic", "--mode", "default", "--batches", "2"]
    assert compile_speed.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["images_per_s"]) == {"off", "default"}
    assert all(value > 0 for value in summary["images_per_s"].values())
    ratio = summary["images_per_s"]["default"] / summary["images_per_s"]["off"]
    assert summary["ratio"] == pytest.approx(ratio, abs=1e-3)
    assert compiled == [False, False, True, True] * 2  # warm-up and timed, twice
    assert "KDCORE_COMPILE" not in os.environ  # later runs of the process train uncompiled


ABSENT_PACKAGES = """
import sys


class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("streamlit", "plotly"):
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, Absent())
"""


def test_gpu_session_script_runs_every_step_and_leaves_what_the_device_tool_brings_back(tmp_path):
    """A dry run on the CPU: a lent GPU's few minutes must not be lost to a broken script. As on
    the device machine, streamlit and plotly cannot be imported."""
    out = tmp_path / "out"
    out.mkdir()
    absent = tmp_path / "absent"
    absent.mkdir()
    (absent / "sitecustomize.py").write_text(ABSENT_PACKAGES)
    dry_run = {"DEVICE": "cpu", "DATA": "synthetic", "EPOCHS": "1", "SUBSET": "256",
               "ARCH": "resnet18", "SKIP": "bench", "PROFILE_BATCHES": "4"}  # fmt: skip
    path = os.pathsep.join([str(absent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **dry_run, "OUT": str(out), "PYTHON": sys.executable, "PYTHONPATH": path}
    script = BENCH / "gpu_session.sh"
    done = subprocess.run(["bash", str(script)], cwd=BENCH.parent, env=env, timeout=300)
    assert done.returncode == 0
    files = {path.name for path in out.iterdir()}
    assert files == {"gpu.txt", "summary.jsonl", "steps.log", "runs.tar.gz"}  # the tool's 8 at most
    assert "kdcore.cli imports" in (out / "gpu.txt").read_text()
    steps = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    names = ["data", "student", "profile", "study", "teacher_imagenet_stem", "student_compiled"]
    assert [step["step"] for step in steps] == names
    assert all(step["exit"] == 0 and step["result"] for step in steps), steps
    assert len(steps[3]["result"]) == 5  # the study's five rows
    with tarfile.open(out / "runs.tar.gz") as archive:
        members = archive.getnames()
    runs = {Path(name).parent.name for name in members if name.endswith("metrics.jsonl")}
    assert len(runs) == 6  # student, study teacher + student alone + distilled, teacher, compiled
    assert not [name for name in members if name.endswith(".pt") or "teacher_cache" in name]
    assert all(f"=== {name} (exit 0" in (out / "steps.log").read_text() for name in names)


def test_engine_profile_reports_where_the_time_goes(capsys):
    profile = load_script("engine_profile")
    argv = ["--data-dir", "synthetic", "--device", "cpu", "--batches", "4", "--top", "5"]
    assert profile.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["batches"] == 4 and summary["wall_s"] > 0 and summary["device"] == "cpu"
    assert summary["device_busy_share"] is None  # a CPU has no separate device to keep busy
    assert all(summary[key] >= 0 for key in ("kernel_launches_per_batch", "syncs_per_batch"))
    assert any("convolution" in line for line in lines[:-1])  # the table of the costliest ops
