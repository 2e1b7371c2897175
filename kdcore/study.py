"""The study's five results beside ours: one table, shared by the dashboard and the CLI.

The study trained on full CIFAR-10 (ResNet101 teachers, SmallCNN students). Its test accuracies:

    setting                                   study
    teacher from scratch                      79.48 %
    teacher from ImageNet weights             87.54 %
    student distilled from scratch teacher    75.98 %
    student distilled from ImageNet teacher   81.00 %
    student alone                             67.51 %

    rows = comparison_rows(list_runs(root))   # five dicts, in the order above
    rows[0]  # {"setting": "teacher from scratch", "study_acc": 0.7948, "our_acc": .., "run_id": ..}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kdcore.runs import RunRecord


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


def setting_of(record: RunRecord, teachers: dict[str, RunRecord]) -> str | None:
    """The study setting a run belongs to (a STUDY_RESULTS key), or None.

    Teachers by their initialisation ("file" weights count as ImageNet weights); distilled
    students by the initialisation of their teacher run; a teacher given as a .pt path is unknown.
    """
    spec = record.spec
    if spec.role == "teacher":
        return "teacher_scratch" if spec.init == "scratch" else "teacher_imagenet"
    if spec.role == "student":
        return "student_alone"
    teacher = teachers.get(spec.teacher or "")
    if teacher is None:
        return None
    return "distill_scratch" if teacher.spec.init == "scratch" else "distill_imagenet"


def matching_runs(records: Sequence[RunRecord]) -> dict[str, RunRecord | None]:
    """For each study setting, our most recent finished run of that setting (None if none).

    `records` as `list_runs` returns them (newest first); unfinished runs are ignored.
    """
    teachers = {r.run_id: r for r in records if r.spec.role == "teacher"}
    matches: dict[str, RunRecord | None] = {result.key: None for result in STUDY_RESULTS}
    for record in records:
        if record.status != "finished" or record.best_test_acc is None:
            continue
        key = setting_of(record, teachers)
        if key is not None and matches[key] is None:
            matches[key] = record
    return matches


def comparison_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Five rows: setting, the study's accuracy, ours (best test accuracy), our run id and its data.

    Accuracies are fractions; `our_acc` and `run_id` are None where we have no finished run.
    """
    matches = matching_runs(records)
    rows = []
    for result in STUDY_RESULTS:
        record = matches[result.key]
        rows.append(
            {
                "setting": result.setting,
                "study_acc": result.test_acc,
                "our_acc": record.best_test_acc if record else None,
                "run_id": record.run_id if record else None,
                "data": record.spec.data if record else None,
            }
        )
    return rows
