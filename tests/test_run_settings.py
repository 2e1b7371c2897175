"""A run's settings as it trained, and the ones that tell a few runs apart."""

from __future__ import annotations

import json

import pytest

from kdcore.run_settings import DISTILL_ONLY, differing_settings, settings_of
from kdcore.runs import RunError, RunSpec, create_run, load_run


def test_a_runs_settings_are_its_spec_and_the_recipe_its_folder_recorded(tmp_path):
    root = tmp_path / "runs"
    spec = RunSpec(role="teacher", data="synthetic", arch="cifarnet")
    teacher = load_run(create_run(spec, root), root)
    student = load_run(create_run(RunSpec(role="student", data="synthetic", seed=3), root), root)
    settings = settings_of(teacher)
    assert settings["role"] == "teacher" and settings["arch"] == "cifarnet"
    assert settings["optimizer"] == "muon" and settings["lookahead"] is True  # the recipe's
    assert not DISTILL_ONLY & set(settings) and "eval_batch_size" not in settings
    assert settings_of(student)["seed"] == 3 and settings_of(student)["optimizer"] == "adamw"

    config = json.loads((student.folder / "config.json").read_text())
    config["train_config"]["lr"] = 0.5  # what the run recorded wins over today's recipe
    (student.folder / "config.json").write_text(json.dumps(config))
    assert settings_of(load_run(student.run_id, root))["lr"] == 0.5
    config["train_config"]["lr"] = "fast"
    (student.folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="train_config"):
        settings_of(load_run(student.run_id, root))


def test_only_the_settings_that_differ_are_listed_unless_every_one_is_asked_for():
    runs = {
        "a": {"role": "student", "lr": 0.012, "seed": 0},
        "b": {"role": "student", "lr": 0.006, "seed": 0},
        "c": {"role": "distill", "lr": 0.012, "seed": 0, "temperature": 4.0},
    }
    assert differing_settings(runs) == ["role", "lr", "temperature"]  # only c has a T
    assert differing_settings(runs, every=True) == ["role", "lr", "seed", "temperature"]
    assert differing_settings({"a": runs["a"], "b": dict(runs["a"])}) == []
    assert differing_settings({}) == []
