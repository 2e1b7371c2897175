"""`python -m kdcore`: every subcommand answers --help, trains, evaluates and refuses bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kdcore.cli as cli
from kdcore.cli import build_parser, main
from kdcore.data import synthetic_split
from kdcore.runs import list_runs

SUBCOMMANDS = [
    "teacher",
    "student",
    "distill",
    "evaluate",
    "classify",
    "bench",
    "study",
    "runs",
    "data",
]
TINY = ["--data-dir", "synthetic", "--train-subset", "300", "--epochs", "1", "--batch-size", "64"]


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m kdcore " + command in capsys.readouterr().out


def test_common_flags_have_the_documented_names():
    parser = build_parser()
    for command in ("teacher", "student", "distill"):
        flags = parser.parse_args([command, *(["--teacher", "x"] if command == "distill" else [])])
        for name in ("data_dir", "epochs", "out", "seed", "train_subset", "batch_size", "lr"):
            assert hasattr(flags, name), (command, name)
    distill = parser.parse_args(
        ["distill", "--teacher", "t", "--temperature", "4", "--alpha", "0.9"]
    )
    assert (distill.temperature, distill.alpha) == (4.0, 0.9)


@pytest.fixture
def trained_runs(tmp_path, capsys, fast_synthetic):
    """A tiny teacher, a lone student and a distilled student trained through the CLI."""
    out = tmp_path / "runs"
    teacher_args = ["teacher", "--arch", "cifarnet", *TINY, "--out", str(out)]
    assert main(teacher_args) == 0
    teacher = last_json(capsys.readouterr().out)
    assert main(["student", *TINY, "--out", str(out)]) == 0
    student = last_json(capsys.readouterr().out)
    distill_args = [
        "distill",
        "--teacher",
        teacher["run_id"],
        "-T",
        "4",
        "--alpha",
        "0.7",
        *TINY,
        "--out",
        str(out),
    ]
    assert main(distill_args) == 0
    distilled = last_json(capsys.readouterr().out)
    return out, teacher, student, distilled


def test_training_commands_write_finished_runs(trained_runs):
    out, teacher, student, distilled = trained_runs
    records = {record.run_id: record for record in list_runs(out)}
    assert {teacher["run_id"], student["run_id"], distilled["run_id"]} == set(records)
    assert all(record.status == "finished" for record in records.values())
    assert records[distilled["run_id"]].spec.temperature == 4.0
    assert records[distilled["run_id"]].spec.teacher_tta == "off"
    assert records[distilled["run_id"]].spec.teacher == teacher["run_id"]
    assert 0.0 <= student["best_test_acc"] <= 1.0


def test_evaluate_reports_accuracy_of_a_run(trained_runs, capsys):
    out, _, student, _ = trained_runs
    checkpoint = out / student["run_id"] / "best.pt"
    assert main(["evaluate", str(checkpoint), "--data-dir", "synthetic"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["arch"] == "smallcnn"
    assert result["images"] == len(synthetic_split("test"))
    assert 0.0 <= result["test_acc"] <= 1.0


def test_evaluate_of_a_distilled_run_compares_it_with_its_own_teacher(trained_runs, capsys):
    out, teacher, student, distilled = trained_runs
    args = ["--data-dir", "synthetic", "--out", str(out)]
    assert main(["evaluate", distilled["run_id"], *args]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["teacher"] == teacher["run_id"]
    for key in ("test_acc", "agreement", "teacher_acc", "ece", "teacher_ece"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["kl_teacher_student"] >= 0.0 and result["nll"] > 0.0
    assert main(["evaluate", teacher["run_id"], "--teacher", teacher["run_id"], *args]) == 0
    itself = last_json(capsys.readouterr().out)
    assert itself["agreement"] == 1.0 and itself["kl_teacher_student"] == pytest.approx(0, abs=1e-6)
    assert main(["evaluate", student["run_id"], *args]) == 0  # alone: no teacher unless named
    assert "agreement" not in last_json(capsys.readouterr().out)


def test_evaluate_measures_a_run_on_the_validation_split_it_held_out(trained_runs, capsys):
    from kdcore.runs import load_run
    from kdcore.teacher_cache import CACHE_FOLDER

    out, teacher, _, _ = trained_runs
    held_out = ["--val-split", "64", "-T", "2", "--alpha", "0.5", "--out", str(out)]
    assert main(["distill", "--teacher", teacher["run_id"], *TINY, *held_out]) == 0
    run_id = last_json(capsys.readouterr().out)["run_id"]
    assert main(["evaluate", run_id, "--data-dir", "synthetic", "--out", str(out)]) == 0
    report = last_json(capsys.readouterr().out)
    validation = report["validation"]
    assert validation["images"] == 64 and report["images"] == len(synthetic_split("test"))
    # the same final weights on the same 64 held-out images as training's last epoch read them
    assert validation["val_acc"] == pytest.approx(load_run(run_id, out).metrics[-1]["val_acc"])
    for key in ("agreement", "teacher_acc", "ece", "nll", "kl_teacher_student"):
        assert key in validation, key
    caches = sorted(
        p.name.split("-")[0] for p in (out / teacher["run_id"] / CACHE_FOLDER).glob("*.pt")
    )
    assert "val64" in caches and "test" in caches  # the teacher's logits on each split, kept

    weights = out / run_id / "last.pt"  # a checkpoint path: its recorded split is measured too
    assert main(["evaluate", str(weights), "--data-dir", "synthetic", "--out", str(out)]) == 0
    again = last_json(capsys.readouterr().out)["validation"]
    assert (
        again["agreement"] == validation["agreement"] and again["val_acc"] == validation["val_acc"]
    )
    assert main(["evaluate", teacher["run_id"], "--data-dir", "synthetic", "--out", str(out)]) == 0
    assert "validation" not in last_json(capsys.readouterr().out)  # the teacher held none out


def test_classify_reports_each_file_and_survives_a_broken_one(trained_runs, tmp_path, capsys):
    from PIL import Image

    out, _, student, _ = trained_runs
    good = tmp_path / "good.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    code = main(
        ["classify", student["run_id"], str(good), str(broken), "--out", str(out), "--top-k", "2"]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 1  # one file failed
    assert lines[0]["file"] == str(good) and len(lines[0]["top_k"]) == 2
    assert lines[0]["top_k"][0][1] >= lines[0]["top_k"][1][1]
    assert "broken.jpg" in lines[1]["error"]


def test_runs_lists_every_run(trained_runs, capsys):
    out, teacher, _, _ = trained_runs
    assert main(["runs", "--out", str(out)]) == 0
    listing = capsys.readouterr().out
    assert teacher["run_id"] in listing and listing.count("finished") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["distill", "--teacher", "no-such-run", "--data-dir", "synthetic"], "No run"),
        (["distill", "--teacher", "x", "--data-dir", "synthetic", "-T", "0"], "Temperature"),
        (["distill", "--teacher", "x", "--data-dir", "synthetic", "--alpha", "1.5"], "alpha"),
        (["student", "--data-dir", "synthetic", "--epochs", "0"], "Epochs"),
        (["student", "--data-dir", "synthetic", "--label-smoothing", "1.5"], "Label smoothing"),
        (["student", "--data-dir", "synthetic", "--weight-decay", "-1"], "Weight decay"),
        (["student", "--data-dir", "/no/such/folder"], "does not exist"),
        (["evaluate", "/no/such.pt", "--data-dir", "synthetic"], "does not exist"),
    ],
)
def test_impossible_settings_exit_2_with_a_clear_message(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error


def test_corrupt_checkpoint_is_refused_clearly(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage" * 10)
    assert main(["evaluate", str(corrupt), "--data-dir", "synthetic"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "kdcore", "runs", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr


def test_study_trains_every_row_it_can_and_prints_the_table(
    tmp_path, capsys, monkeypatch, cifar_named_folder
):
    import urllib.error

    import torchvision.models._api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    out, data = tmp_path / "runs", cifar_named_folder
    args = ["study", "--arch", "resnet18", "--stem", "imagenet", "--teacher-epochs", "1",
            "--epochs", "1", "--batch-size", "32", "--data-dir", str(data)]  # fmt: skip
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    rows = last_json(captured.out)
    assert [row["study_acc"] for row in rows] == [0.7948, 0.8754, 0.7598, 0.81, 0.6751]
    filled = [row["setting"] for row in rows if row["our_acc"] is not None]
    assert filled == ["teacher from scratch", "student distilled from the scratch teacher",
                      "student alone (no teacher)"]  # fmt: skip
    assert rows[0]["arch"] == "resnet18" and rows[0]["stem"] == "imagenet" and rows[0]["n"] == 1
    assert "protocol: differs: teacher arch resnet18 (study: resnet101)" in captured.out
    assert "not run" in captured.err and "no network" in captured.err
    assert len(list_runs(out)) == 4  # the ImageNet teacher's failed run stays, marked failed
    teachers = [r for r in list_runs(out) if r.spec.role == "teacher"]
    assert {r.spec.model_stem for r in teachers} == {"imagenet"}


def test_lower_priority_nices_the_process():
    check = (
        "import os; from kdcore.cli import lower_priority; before = os.nice(0); "
        "lower_priority(7); print(os.nice(0) - before == min(7, 19 - before))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's scheduling classes")
def test_lower_priority_moves_every_thread_to_the_idle_class():
    check = (
        "import os, threading; from kdcore.cli import lower_priority\n"
        "go = threading.Event(); seen = []\n"
        "def policy(): go.wait(); seen.append(os.sched_getscheduler(threading.get_native_id()))\n"
        "before = threading.Thread(target=policy); before.start()\n"
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE)\n"
        "lower_priority(0, idle_class=True)\n"
        "after = threading.Thread(target=policy); after.start(); go.set()\n"
        "before.join(); after.join()\n"
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE, seen == [os.SCHED_IDLE] * 2)"
    )
    # a session of its own, as the queue gives a run: in the idle class it would wait on any
    # busy process of this session
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, start_new_session=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]


def test_distill_passes_the_teachers_test_time_augmentation_to_the_run(monkeypatch):
    captured = []
    monkeypatch.setattr(cli, "_train", lambda spec, args: captured.append(spec) or 0)
    monkeypatch.setattr(cli, "teacher_data_warning", lambda spec, out: None)
    assert (
        main(["distill", "--teacher", "t", "--data-dir", "synthetic", "--teacher-tta", "flip"]) == 0
    )
    assert captured[0].teacher_tta == "flip"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--teacher", "t", "--teacher-tta", "mirror"])


def test_computing_commands_keep_freed_memory_for_reuse_and_other_commands_do_not(
    tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    assert main(["runs", "--out", str(tmp_path)]) == 0
    assert calls == []
    assert main(["evaluate", str(tmp_path / "nowhere.pt"), "--data-dir", "synthetic"]) == 2
    assert calls == [True]  # before the command's own work, whatever becomes of it


def test_keep_freed_memory_sets_glibcs_malloc_and_does_nothing_without_glibc(monkeypatch):
    import ctypes
    import platform

    assert cli.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")

    def no_glibc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert cli.keep_freed_memory() is False
