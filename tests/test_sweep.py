"""Sweeps: the grid, bad input, resume, the teacher pass shared by a seed's trials, the summary."""

from __future__ import annotations

import json
import shutil

import pytest

from kdcore.cli import main
from kdcore.evaluation import read_evaluation
from kdcore.runs import RunSpec, create_run, list_runs, load_run
from kdcore.status import read_status, write_status
from kdcore.sweep import (
    SweepError,
    SweepSpec,
    evaluate_trials,
    read_sweep,
    run_trials,
    start_sweep,
    summarise,
    sweep_dir,
)

TRAINING = {"data": "synthetic", "epochs": 1, "train_subset": 256, "batch_size": 64}
TINY_TEACHER = RunSpec(role="teacher", arch="cifarnet", **{**TRAINING, "batch_size": 32})


@pytest.fixture(scope="module")
def teacher_root(tmp_path_factory):
    from kdcore.execute import execute_run

    root = tmp_path_factory.mktemp("sweep") / "checkpoints"
    teacher = create_run(TINY_TEACHER, root)
    execute_run(teacher, root, device="cpu")
    return root, teacher


def grid(teacher: str, **fields) -> SweepSpec:
    values = {"teacher": teacher, "temperatures": (1.0, 4.0), "alphas": (0.5,), "seeds": (0,),
              "training": TRAINING, **fields}  # fmt: skip
    return SweepSpec(**values)


def test_the_grid_expands_to_baselines_then_every_cell_and_seed():
    spec = grid("t", temperatures=(2.0,), alphas=(0.1, 0.9), seeds=(0, 1))
    trials = spec.trials()
    assert [t.key for t in trials] == ["alone-s0", "alone-s1", "T2-a0.1-s0", "T2-a0.1-s1",
                                       "T2-a0.9-s0", "T2-a0.9-s1"]  # fmt: skip
    distilled = trials[-1].spec
    assert (distilled.role, distilled.teacher, distilled.temperature, distilled.alpha) == (
        "distill", "t", 2.0, 0.9)  # fmt: skip
    assert (distilled.seed, distilled.epochs, distilled.train_subset) == (1, 1, 256)
    assert trials[0].spec.role == "student" and trials[0].spec.teacher is None
    assert len(grid("t", baseline=False).trials()) == 2
    assert spec.sweep_id == grid("t", temperatures=(2.0,), alphas=(0.1, 0.9), seeds=(0, 1)).sweep_id
    assert spec.sweep_id != grid("t", temperatures=(2.0,), alphas=(0.1,), seeds=(0, 1)).sweep_id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperatures": ()}, "grid is empty"),
        ({"alphas": ()}, "grid is empty"),
        ({"temperatures": (0.0,)}, "Temperature T must be greater than 0"),
        ({"alphas": (1.5,)}, "alpha weighs the soft term"),
        ({"teacher": "no-such-run"}, "No run"),
        ({"training": {**TRAINING, "epochs": 0}}, "Epochs must be at least 1"),
    ],
)
def test_an_impossible_sweep_is_refused_and_creates_nothing(teacher_root, tmp_path, fields,
                                                            message):  # fmt: skip
    root, teacher = teacher_root
    before = {r.run_id for r in list_runs(root)}
    with pytest.raises(SweepError, match=message):
        fields = dict(fields)
        start_sweep(grid(fields.pop("teacher", teacher), **fields), root)
    assert {r.run_id for r in list_runs(root)} == before
    assert not (root / "sweeps").exists() or not any((root / "sweeps").iterdir())


def test_a_corrupt_sweep_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "sweeps" / "sweep-x"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text('{"id": "sweep-x", "trials": ')
    with pytest.raises(SweepError, match="corrupt"):
        read_sweep(folder)
    with pytest.raises(SweepError, match="No sweep"):
        read_sweep(tmp_path / "sweeps" / "other")


def test_a_sweep_whose_folder_is_corrupt_is_refused_before_any_run(teacher_root):
    root, teacher = teacher_root
    spec = grid(teacher, label="corrupt")
    folder = sweep_dir(spec.sweep_id, root)
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text("{not json")
    before = {r.run_id for r in list_runs(root)}
    with pytest.raises(SweepError, match="corrupt"):
        start_sweep(spec, root)
    assert {r.run_id for r in list_runs(root)} == before
    shutil.rmtree(folder)  # the module's root is shared with the tests below


def test_a_sweep_shares_its_teacher_pass_resumes_and_summarises(teacher_root):
    root, teacher = teacher_root
    spec = grid(teacher)
    sweep_id, runs = start_sweep(spec, root)
    assert set(runs) == {"alone-s0", "T1-a0.5-s0", "T4-a0.5-s0"}
    assert read_sweep(sweep_dir(sweep_id, root))["trials"] == runs
    records = run_trials(list(runs.values()), root, max_running=2, poll_seconds=0.2)
    assert {record.status for record in records} == {"finished"}
    # two distilled trials of seed 0, trained side by side: the teacher ran once for them
    caches = [read_status(root / runs[key]).teacher_cache for key in ("T1-a0.5-s0", "T4-a0.5-s0")]
    assert sorted(cache["epochs_computed"] for cache in caches) == [0, 1]

    evaluate_trials(spec, runs, root)
    baseline = read_evaluation(load_run(runs["alone-s0"], root).folder)
    assert baseline["teacher"] == teacher and "agreement" in baseline
    summary = summarise(spec, runs, root)
    assert summary["baseline"]["done"] == 1 and len(summary["cells"]) == 2
    cell = summary["cells"][0]
    assert (cell["temperature"], cell["alpha"], cell["done"]) == (1.0, 0.5, 1)
    assert cell["gain"] == pytest.approx(
        cell["test_acc_mean"] - summary["baseline"]["test_acc_mean"]
    )

    # resume: finished trials are kept; a failed one gets a new run
    failed = root / runs["T4-a0.5-s0"]
    write_status(failed, read_status(failed).replace(state="failed", error="out of memory"))
    _, resumed = start_sweep(spec, root)
    assert resumed["alone-s0"] == runs["alone-s0"] and resumed["T1-a0.5-s0"] == runs["T1-a0.5-s0"]
    assert resumed["T4-a0.5-s0"] != runs["T4-a0.5-s0"]
    assert load_run(resumed["T4-a0.5-s0"], root).status == "queued"


def test_the_sweep_command_prints_a_table_and_a_json_summary(teacher_root, capsys):
    root, teacher = teacher_root
    code = main(["sweep", "--teacher", teacher, "-T", "2", "--alpha", "0.5", "--data-dir",
                 "synthetic", "--epochs", "1", "--train-subset", "256", "--batch-size", "64",
                 "--out", str(root)])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0] == "test accuracy, final epoch"
    assert out[1].startswith("student alone") and "T=2 alpha=0.5" in out[2]
    summary = json.loads(out[-1])
    assert summary["failed"] == {} and set(summary["trials"]) == {"alone-s0", "T2-a0.5-s0"}
    assert summary["cells"][0]["done"] == 1 and summary["compared_on"] == "test_acc"


def test_a_sweep_that_holds_out_a_validation_split_is_compared_on_it(teacher_root, capsys):
    root, teacher = teacher_root
    code = main(["sweep", "--teacher", teacher, "-T", "2", "--alpha", "0.5", "--data-dir",
                 "synthetic", "--epochs", "1", "--train-subset", "256", "--batch-size", "64",
                 "--val-split", "64", "--out", str(root)])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("validation accuracy, final epoch")
    summary = json.loads(out[-1])
    assert summary["compared_on"] == "val_acc" and summary["failed"] == {}
    val = {
        key: load_run(run_id, root).metrics[-1]["val_acc"]
        for key, run_id in summary["trials"].items()
    }
    baseline, (cell,) = summary["baseline"], summary["cells"]
    assert (baseline["val_acc_mean"], cell["val_acc_mean"]) == (val["alone-s0"], val["T2-a0.5-s0"])
    assert cell["gain"] == pytest.approx(val["T2-a0.5-s0"] - val["alone-s0"])
    assert f"{val['alone-s0']:.2%}" in out[1]  # the table shows validation, not test, accuracy

    # agreement, KL and ECE are read on the same validation split, against the sweep's teacher
    assert summary["evaluated_on"] == "validation"
    reports = {key: read_evaluation(load_run(run_id, root).folder)
               for key, run_id in summary["trials"].items()}  # fmt: skip
    held_out = reports["T2-a0.5-s0"]["validation"]
    assert held_out["images"] == 64 and held_out["val_acc"] == pytest.approx(val["T2-a0.5-s0"])
    for metric in ("agreement", "kl_teacher_student", "ece"):
        assert cell[f"{metric}_mean"] == pytest.approx(held_out[metric])
        assert baseline[f"{metric}_mean"] == pytest.approx(
            reports["alone-s0"]["validation"][metric]
        )


def test_a_validation_sweep_never_mixes_in_test_split_figures(teacher_root):
    root, teacher = teacher_root
    spec = grid(teacher, temperatures=(2.0,), training={**TRAINING, "val_split": 64})
    _, runs = start_sweep(spec, root)
    run_trials(list(runs.values()), root, max_running=1, poll_seconds=0.2)
    evaluate_trials(spec, runs, root)
    folder = load_run(runs["T2-a0.5-s0"], root).folder
    report = read_evaluation(folder)
    del report["validation"]  # an evaluation written before validation figures existed
    (folder / "evaluation.json").write_text(json.dumps(report))

    (cell,) = summarise(spec, runs, root)["cells"]
    assert cell["agreement_mean"] is None and cell["ece_mean"] is None  # not the test split's
    assert cell["val_acc_mean"] is not None and cell["test_acc_mean"] == report["test_acc"]
    evaluate_trials(spec, runs, root)  # evaluates it again, on the validation split too
    (cell,) = summarise(spec, runs, root)["cells"]
    assert cell["agreement_mean"] == read_evaluation(folder)["validation"]["agreement"]
