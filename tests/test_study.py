"""The study table compares like with like: only runs in the study's protocol fill a row."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdcore.runs import RunRecord, RunSpec
from kdcore.status import RunStatus
from kdcore.study import Protocol, baseline_like, study_rows

DATA = "cifar10"
_clock = iter(range(1_000, 100_000))


def run(run_id: str, final_acc: float = 0.5, status: str = "finished", **fields) -> RunRecord:
    """A finished run of the study's protocol unless `fields` say otherwise."""
    fields = {"data": DATA, "epochs": 10, **fields}
    if fields.get("role") == "teacher":
        fields.setdefault("arch", "resnet101")
    spec = RunSpec(**fields)
    rows = tuple(
        {"epoch": e, "test_acc": final_acc + 0.1 * (e < spec.epochs)}
        for e in range(1, spec.epochs + 1)
    )  # fmt: skip  (the best epoch is not the last)
    return RunRecord(run_id, Path(run_id), spec, RunStatus(state=status), next(_clock), rows)


def by_setting(rows):
    return {row["setting"].split(" (")[0]: row for row in rows}


def test_only_runs_in_the_protocol_fill_a_row():
    records = [
        run("alone-synthetic", data="synthetic", role="student"),
        run("alone-subset", role="student", train_subset=4000),
        run("alone-3-epochs", role="student", epochs=3),
        run("alone-val", role="student", val_split=5000),
        run("alone-stopped", role="student", status="stopped"),
        run("alone", 0.70, role="student"),
    ]
    row = by_setting(study_rows(records, DATA))["student alone"]
    assert row["run_ids"] == ["alone"] and row["our_acc"] == pytest.approx(0.70)  # final, not best
    assert (row["n"], row["our_std"], row["epochs"], row["subset"]) == (1, None, 10, "full")


def test_seeds_are_averaged_with_their_spread_and_the_newest_run_of_a_seed_counts():
    records = [
        run("s0-old", 0.10, role="student", seed=0),
        run("s0", 0.70, role="student", seed=0),
        run("s1", 0.72, role="student", seed=1),
        run("s2", 0.74, role="student", seed=2),
    ]
    row = by_setting(study_rows(records, DATA))["student alone"]
    assert sorted(row["seeds"]) == [0, 1, 2] and "s0-old" not in row["run_ids"]
    assert row["our_acc"] == pytest.approx(0.72) and row["our_std"] == pytest.approx(0.02)


def test_a_distilled_student_counts_only_with_a_teacher_in_the_protocol():
    records = [
        run("t-scratch", 0.80, role="teacher"),
        run("t-short", 0.60, role="teacher", epochs=2),
        run("t-imagenet", 0.88, role="teacher", init="imagenet", stem="imagenet"),
        run("d-scratch", 0.76, role="distill", teacher="t-scratch"),
        run("d-short-teacher", 0.50, role="distill", teacher="t-short"),
        run("d-other-T", 0.51, role="distill", teacher="t-scratch", temperature=8.0),
        run("d-mirror", 0.77, role="distill", teacher="t-scratch", teacher_tta="flip"),
        run("d-imagenet", 0.81, role="distill", teacher="t-imagenet"),
    ]
    rows = by_setting(study_rows(records, DATA))
    assert rows["teacher from scratch"]["run_ids"] == ["t-scratch"]
    assert rows["teacher from ImageNet weights"]["stem"] == "imagenet"
    assert rows["student distilled from the scratch teacher"]["run_ids"] == ["d-scratch"]
    assert rows["student distilled from the ImageNet teacher"]["run_ids"] == ["d-imagenet"]
    assert rows["student distilled from the ImageNet teacher"]["arch"] == "smallcnn from resnet101"


def test_a_teacher_of_another_arch_fills_rows_only_when_the_protocol_names_it():
    records = [run("t", 0.86, role="teacher", arch="cifarnet"), run("d", 0.74, role="distill",
               teacher="t")]  # fmt: skip
    assert all(row["our_acc"] is None for row in study_rows(records, DATA))
    rows = by_setting(study_rows(records, DATA, Protocol(teacher_arch="cifarnet")))
    assert rows["teacher from scratch"]["run_ids"] == ["t"]
    assert rows["student distilled from the scratch teacher"]["run_ids"] == ["d"]
    assert "no ImageNet weights" in rows["teacher from ImageNet weights"]["command"]
    assert Protocol(teacher_arch="cifarnet").differences() == [
        "teacher arch cifarnet (study: resnet101)"
    ]


def test_empty_rows_say_what_to_run():
    rows = by_setting(study_rows([run("t", 0.8, role="teacher")], DATA))
    assert (
        rows["student alone"]["command"]
        == "python -m kdcore student --epochs 10 --data-dir cifar10"
    )
    assert rows["student distilled from the scratch teacher"]["command"] == (
        "python -m kdcore distill --teacher t --epochs 10 -T 2 --alpha 0.5 --data-dir cifar10"
    )
    imagenet = rows["student distilled from the ImageNet teacher"]["command"]
    assert imagenet.startswith(
        "first the teacher: python -m kdcore teacher --arch resnet101 --init imagenet"
    )


def test_data_without_the_cifar10_classes_fills_no_row():
    rows = study_rows([run("alone", role="student", data="synthetic")], "synthetic")
    assert all(row["our_acc"] is None and "CIFAR-10 classes" in row["command"] for row in rows)


def test_the_baseline_is_every_seed_of_the_same_settings_and_gains_are_over_its_mean():
    alone = [run(f"alone-s{seed}", acc, role="student", seed=seed)
             for seed, acc in ((0, 0.70), (1, 0.72), (2, 0.74))]  # fmt: skip
    other = run("alone-3-epochs", 0.60, role="student", epochs=3)
    distilled = run("d", 0.75, role="distill", teacher="t")
    short = run("d-3", 0.65, role="distill", teacher="t", epochs=3)
    baseline = baseline_like(alone[1], [*alone, other, distilled, short])
    assert baseline.seeds == [0, 1, 2] and baseline.mean == pytest.approx(0.72)
    assert baseline.std == pytest.approx(0.02)
    assert baseline.gain(distilled) == pytest.approx(0.03)
    assert baseline.gain(short) is None  # other epochs: not comparable
    assert baseline_like(other, [*alone, other]).seeds == [0]


def test_an_empty_row_gives_the_run_that_fills_it_once_it_has_finished():
    def fill(rows, key_setting: str, run_id: str, **extra) -> RunRecord:
        spec = rows[key_setting]["spec"]
        assert spec is not None, key_setting
        return run(run_id, 0.7, **{**spec.to_dict(), **extra})

    rows = by_setting(study_rows([], DATA))
    assert rows["student distilled from the scratch teacher"]["spec"] is None  # no teacher yet
    assert rows["teacher from ImageNet weights"]["spec"].init == "imagenet"
    records = [fill(rows, "teacher from scratch", "t"), fill(rows, "student alone", "s")]
    rows = by_setting(study_rows(records, DATA))
    assert (
        rows["teacher from scratch"]["run_ids"] == ["t"]
        and rows["teacher from scratch"]["spec"] is None
    )
    assert rows["student alone"]["run_ids"] == ["s"]
    distilled = rows["student distilled from the scratch teacher"]["spec"]
    assert (distilled.teacher, distilled.temperature, distilled.alpha) == ("t", 2.0, 0.5)
    records.append(fill(rows, "student distilled from the scratch teacher", "d"))
    assert by_setting(study_rows(records, DATA))["student distilled from the scratch teacher"][
        "run_ids"] == ["d"]  # fmt: skip
    protocol = Protocol(teacher_arch="cifarnet", train_subset=500)
    rows = by_setting(study_rows([], DATA, protocol))
    assert rows["teacher from ImageNet weights"]["spec"] is None  # cifarnet has no ImageNet weights
    assert rows["teacher from scratch"]["spec"].train_subset == 500
    assert all(row["spec"] is None for row in study_rows([], "synthetic"))  # not CIFAR-10's classes
