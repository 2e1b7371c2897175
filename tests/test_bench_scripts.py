"""The benchmark scripts run end to end on tiny data and report what they trained."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

from kdcore.cli import main as cli_main

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
