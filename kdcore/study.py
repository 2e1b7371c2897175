"""The study's five results beside ours: one table, shared by the dashboard and the CLI.

The study trained on full CIFAR-10 (ResNet101 teachers, SmallCNN students, 10 epochs each). Its
test accuracies:

    setting                                   study
    teacher from scratch                      79.48 %
    teacher from ImageNet weights             87.54 %
    student distilled from scratch teacher    75.98 %
    student distilled from ImageNet teacher   81.00 %
    student alone                             67.51 %

Only runs in the same protocol fill a row: the same data for teachers and students (with the
CIFAR-10 classes), its full training split, the row's epochs, architecture and initialisation,
and for distilled students the study's T and alpha and a teacher that fills its own row. Seeds
are averaged (the newest finished run of each seed).

    rows = study_rows(list_runs(root), data="cifar10")   # five dicts, in the order above
    rows[0]  # {"setting": "teacher from scratch", "study_acc": 0.7948, "our_acc": .., "n": .., ...}
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kdcore.data import CIFAR10_CLASSES, DataError, list_source, same_source
from kdcore.losses import DEFAULT_ALPHA, DEFAULT_TEMPERATURE
from kdcore.models import is_resnet
from kdcore.runs import RunRecord, RunSpec

STUDY_TEACHER_ARCH = "resnet101"


@dataclass(frozen=True)
class StudyResult:
    key: str
    setting: str
    test_acc: float  # fraction 0..1


STUDY_RESULTS: tuple[StudyResult, ...] = (
    StudyResult("teacher_scratch", "teacher from scratch", 0.7948),
    StudyResult("teacher_imagenet", "teacher from ImageNet weights", 0.8754),
    StudyResult("distill_scratch", "student distilled from the scratch teacher", 0.7598),
    StudyResult("distill_imagenet", "student distilled from the ImageNet teacher", 0.8100),
    StudyResult("student_alone", "student alone (no teacher)", 0.6751),
)


@dataclass(frozen=True)
class Protocol:
    """The settings a run must have to fill a row; the defaults are the study's."""

    teacher_arch: str = STUDY_TEACHER_ARCH
    teacher_epochs: int = 10
    epochs: int = 10  # students
    train_subset: int | None = None
    val_split: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA

    def differences(self) -> list[str]:
        """How this protocol departs from the study's, in words (empty: it is the study's)."""
        study, notes = Protocol(), []
        for name in ("teacher_arch", "teacher_epochs", "epochs", "train_subset", "val_split",
                     "temperature", "alpha"):  # fmt: skip
            ours, theirs = getattr(self, name), getattr(study, name)
            if ours != theirs:
                notes.append(f"{name.replace('_', ' ')} {ours} (study: {theirs or 'all'})")
        return notes


def study_rows(
    records: Sequence[RunRecord], data: str, protocol: Protocol = Protocol()
) -> list[dict[str, Any]]:
    """The five rows, each with the study's accuracy and ours on `data` under `protocol`.

    Ours is the mean final test accuracy over seeds (`our_acc`, `our_std` with two seeds or
    more, `n`, `seeds`, `run_ids`); a row with no run has `our_acc` None, the `command` that
    makes one and, where it can start now, its RunSpec (`spec`). Accuracies are fractions.
    """
    cifar = _has_cifar10_classes(data)
    teachers = {r.run_id: r for r in records if r.spec.role == "teacher"}
    rows = []
    for result in STUDY_RESULTS:
        runs = _newest_per_seed(
            [r for r in records if cifar and _fills(r, result.key, data, protocol, teachers)]
        )
        accuracies = [r.final_test_acc for r in runs]
        command, spec = (None, None) if runs else _fill(result.key, data, protocol, rows, cifar)
        rows.append(
            {
                "setting": result.setting,
                "study_acc": result.test_acc,
                "our_acc": statistics.fmean(accuracies) if accuracies else None,
                "our_std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
                "n": len(runs),
                "seeds": [r.spec.seed for r in runs],
                "run_ids": [r.run_id for r in runs],
                "run_id": runs[0].run_id if runs else None,
                "data": data,
                "arch": _arch(result.key, protocol),
                "stem": _stem(runs, result.key, teachers),
                "epochs": _epochs(result.key, protocol),
                "subset": protocol.train_subset or "full",
                "command": command,
                "spec": spec,
            }
        )
    return rows


@dataclass(frozen=True)
class Baseline:
    """The students alone that a run is measured against: finished, on the same data, epochs,
    subset and validation split as a chosen one, the newest run of each seed."""

    runs: tuple[RunRecord, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(r.final_test_acc for r in self.runs)

    @property
    def std(self) -> float | None:
        accuracies = [r.final_test_acc for r in self.runs]
        return statistics.stdev(accuracies) if len(accuracies) > 1 else None

    @property
    def seeds(self) -> list[int]:
        return sorted(r.spec.seed for r in self.runs)

    def comparable(self, record: RunRecord) -> bool:
        return _same_protocol(record.spec, self.runs[0].spec)

    def gain(self, record: RunRecord) -> float | None:
        """Final test accuracy over the baseline's mean (a fraction); None when not comparable."""
        if record.final_test_acc is None or not self.comparable(record):
            return None
        return record.final_test_acc - self.mean


def baseline_like(chosen: RunRecord, records: Sequence[RunRecord]) -> Baseline:
    """`chosen` (a student alone) and the other seeds of the same settings among `records`."""
    alike = [
        r for r in records
        if r.spec.role == "student" and r.status == "finished" and r.final_test_acc is not None
        and _same_protocol(r.spec, chosen.spec)
    ]  # fmt: skip
    return Baseline(tuple(_newest_per_seed(alike or [chosen])))


def _same_protocol(first, second) -> bool:
    return same_source(first.data, second.data) and (
        first.epochs,
        first.train_subset,
        first.val_split,
    ) == (second.epochs, second.train_subset, second.val_split)


def _fills(record: RunRecord, key: str, data: str, protocol: Protocol, teachers) -> bool:
    spec = record.spec
    if record.status != "finished" or record.final_test_acc is None or not record.readable:
        return False
    if not same_source(spec.data, data) or spec.train_subset != protocol.train_subset:
        return False
    if spec.val_split != protocol.val_split or spec.epochs != _epochs(key, protocol):
        return False
    if key.startswith("teacher"):
        imagenet = spec.init != "scratch"
        wanted = key == "teacher_imagenet"
        return (
            spec.role == "teacher"
            and spec.model_arch == protocol.teacher_arch
            and imagenet == wanted
        )
    if key == "student_alone":
        return spec.role == "student"
    if spec.role != "distill" or spec.teacher_tta != "off":  # the study's teacher: one view
        return False
    if (spec.temperature, spec.alpha) != (protocol.temperature, protocol.alpha):
        return False
    teacher = teachers.get(spec.teacher or "")
    teacher_key = "teacher_scratch" if key == "distill_scratch" else "teacher_imagenet"
    return teacher is not None and _fills(teacher, teacher_key, data, protocol, teachers)


def _newest_per_seed(records: Sequence[RunRecord]) -> list[RunRecord]:
    newest: dict[int, RunRecord] = {}
    for record in sorted(records, key=lambda r: r.created_at, reverse=True):
        newest.setdefault(record.spec.seed, record)
    return sorted(newest.values(), key=lambda r: r.created_at, reverse=True)


def _has_cifar10_classes(data: str) -> bool:
    try:
        return list_source(data).classes["train"] == CIFAR10_CLASSES
    except (DataError, OSError):
        return False


def _epochs(key: str, protocol: Protocol) -> int:
    return protocol.teacher_epochs if key.startswith("teacher") else protocol.epochs


def _arch(key: str, protocol: Protocol) -> str:
    if key.startswith("teacher"):
        return protocol.teacher_arch
    if key == "student_alone":
        return "smallcnn"
    return f"smallcnn from {protocol.teacher_arch}"


def _stem(runs: Sequence[RunRecord], key: str, teachers: dict[str, RunRecord]) -> str | None:
    """The ResNet stem(s) of the row's teachers (None when the teacher is no ResNet)."""
    if key == "student_alone":
        return None
    specs = [r.spec if key.startswith("teacher") else teachers[r.spec.teacher].spec for r in runs]
    stems = sorted({spec.model_stem for spec in specs if spec.model_stem})
    return ", ".join(stems) or None


def _fill(
    key: str, data: str, protocol: Protocol, rows_so_far: list, cifar: bool
) -> tuple[str, RunSpec | None]:
    """What fills an empty row: the command to type and the run it makes, or why the row cannot
    be filled yet (an arch without ImageNet weights, a distilled row whose teacher row is empty,
    data without the CIFAR-10 classes) and None."""
    if not cifar:
        return f"{data} does not hold the CIFAR-10 classes; the study's rows need them", None
    common = {"data": data, "train_subset": protocol.train_subset, "val_split": protocol.val_split}
    arch = protocol.teacher_arch
    if key.startswith("teacher"):
        init = "imagenet" if key == "teacher_imagenet" else "scratch"
        if init == "imagenet" and not is_resnet(arch):
            return f"{arch} has no ImageNet weights; pick a ResNet teacher for this row", None
        spec = RunSpec(role="teacher", arch=arch, init=init, epochs=protocol.teacher_epochs,
                       label=f"study teacher ({init})", **common)  # fmt: skip
    elif key == "student_alone":
        spec = RunSpec(role="student", epochs=protocol.epochs, label="study student alone",
                       **common)  # fmt: skip
    else:
        init = "scratch" if key == "distill_scratch" else "imagenet"
        teacher_row = rows_so_far[0 if init == "scratch" else 1]
        if teacher_row["run_id"] is None:
            return f"first the teacher: {teacher_row['command']}", None
        spec = RunSpec(role="distill", teacher=teacher_row["run_id"], epochs=protocol.epochs,
                       temperature=protocol.temperature, alpha=protocol.alpha,
                       label=f"study student from {init} teacher", **common)  # fmt: skip
    return _cli_command(spec), spec


def _cli_command(spec: RunSpec) -> str:
    """The command line that trains `spec` (its label aside)."""
    flags = f"--data-dir {spec.data}"
    if spec.train_subset:
        flags += f" --train-subset {spec.train_subset}"
    if spec.val_split:
        flags += f" --val-split {spec.val_split}"
    if spec.role == "teacher":
        return (
            f"python -m kdcore teacher --arch {spec.arch} --init {spec.init} "
            f"--epochs {spec.epochs} {flags}"
        )
    if spec.role == "student":
        return f"python -m kdcore student --epochs {spec.epochs} {flags}"
    return (
        f"python -m kdcore distill --teacher {spec.teacher} --epochs {spec.epochs} "
        f"-T {spec.temperature:g} --alpha {spec.alpha:g} {flags}"
    )
