"""A finished student, measured the way distillation research reports it, stored in its folder.

`evaluate_run` loads a run's final weights (`last.pt`: the weights after the last epoch, never
the test-chosen best), predicts the test split, and writes `evaluation.json`: test accuracy, NLL,
ECE, the reliability diagram's bins and the confusion matrix; and against a teacher (the run's
own, or one named for a student trained alone) agreement, KL(teacher || student), and the
teacher's accuracy, ECE, NLL, reliability bins and confusion matrix. A run that held out a
validation split gets the same figures on it too, under "validation", so that settings chosen
by them are not chosen on the test split. A teacher's logits on each split are kept in its
cache, so a sweep predicts them once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from kdcore.checkpoints import CheckpointError, atomic_torch_save, load_model
from kdcore.data import ImageSet, load_split, require_same_classes, source_fingerprint
from kdcore.engine import pick_device, predict_logits
from kdcore.metrics import confusion_matrix, reliability, student_report
from kdcore.runs import (
    DEFAULT_ROOT,
    RunError,
    checkpoint_header,
    load_run,
    teacher_checkpoint,
    write_json,
)
from kdcore.teacher_cache import plausible_logits, split_logits_file

EVALUATION_FILE = "evaluation.json"


def evaluate_run(
    run_id: str, root: Path = DEFAULT_ROOT, teacher: str | None = None, device: str = "auto"
) -> dict[str, Any]:
    """Measure a run's final weights on its data's test split (and on its validation split when it
    held one out); write and return the report.

    `teacher` (a run id or checkpoint) defaults to a distilled run's own teacher.
    """
    record = load_run(run_id, root)
    weights = record.checkpoint("last")
    if not weights.is_file():
        raise RunError(f"Run {run_id} has no weights to evaluate yet (no last.pt).")
    spec = record.spec
    teacher = teacher or spec.teacher
    report = evaluate_checkpoint(
        weights, spec.data, teacher, root, pick_device(device), spec.val_split
    )
    report = {"run_id": run_id, "teacher": teacher, **report}
    write_evaluation(record.folder, report)
    return report


def evaluate_checkpoint(
    weights: Path,
    data: str,
    teacher: str | None,
    root: Path,
    device: torch.device,
    val_split: int = 0,
) -> dict[str, Any]:
    """The report for one checkpoint (see the module's docstring). With `val_split` N, the
    validation split of N training images the run held out is measured too, under
    "validation": its accuracy (`val_acc`), NLL, ECE and, with a teacher, agreement and KL."""
    try:
        model, payload = load_model(weights, device)
    except CheckpointError as error:
        raise RunError(str(error)) from error
    test = load_split(data, "test")
    require_same_classes(payload["classes"], test.classes, f"model {weights}", f"{data} test/")
    teacher_weights = None
    if teacher:
        teacher_weights = teacher_checkpoint(teacher, root)
        teacher_classes = checkpoint_header(teacher_weights)["classes"]
        require_same_classes(teacher_classes, test.classes, f"teacher {teacher}", f"{data} test/")
    logits, teacher_logits = _split_logits(model, teacher_weights, test, data, device, "test")
    classes = len(test.classes)
    report: dict[str, Any] = {
        "arch": payload["arch"],
        "images": len(test),
        "classes": list(test.classes),
        **student_report(logits, test.labels, teacher_logits),
        "confusion": confusion_matrix(logits, test.labels, classes),
        "reliability": reliability(logits, test.labels),
    }
    if teacher_logits is not None:
        report["teacher_confusion"] = confusion_matrix(teacher_logits, test.labels, classes)
        report["teacher_reliability"] = reliability(teacher_logits, test.labels)
    if val_split:
        _, val = load_split(data, "train").split_off(val_split)
        split = f"val{val_split}"
        logits, teacher_logits = _split_logits(model, teacher_weights, val, data, device, split)
        held_out = student_report(logits, val.labels, teacher_logits)
        held_out["val_acc"] = held_out.pop("test_acc")
        report["validation"] = {"images": len(val), **held_out}
    return report


def _split_logits(
    model: torch.nn.Module,
    teacher_weights: Path | None,
    images: ImageSet,
    data: str,
    device: torch.device,
    split: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's logits on one split, and the teacher's (None without a teacher)."""
    with torch.inference_mode():
        logits = predict_logits(model, images, device).cpu()
    if teacher_weights is None:
        return logits, None
    return logits, teacher_split_logits(teacher_weights, images, data, device, split)


def teacher_split_logits(
    checkpoint: Path, images: ImageSet, data: str, device: torch.device, split: str = "test"
) -> torch.Tensor:
    """A teacher's (N, C) logits on a held-out split, read from its cache or predicted and
    stored (`split`: "test", or "val5000" for a validation split of 5,000 training images)."""
    path = split_logits_file(checkpoint, source_fingerprint(data), split)
    try:
        logits = torch.load(path, map_location="cpu", weights_only=True)
        if plausible_logits(logits, len(images), len(images.classes)):
            return logits
    except Exception:  # missing or damaged: predict again
        pass
    try:
        teacher, _ = load_model(checkpoint, device)
    except CheckpointError as error:
        raise RunError(str(error)) from error
    with torch.inference_mode():
        logits = predict_logits(teacher, images, device).cpu()
    atomic_torch_save(logits, path)
    return logits


def write_evaluation(folder: Path, report: dict[str, Any]) -> None:
    write_json(folder / EVALUATION_FILE, {**report, "evaluated_at": time.time()})


def read_evaluation(folder: Path) -> dict[str, Any] | None:
    """A run's stored evaluation, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((folder / EVALUATION_FILE).read_text())
    except (OSError, ValueError):
        return None
