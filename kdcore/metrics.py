"""What distillation research reports about a student (Stanton et al. 2021), as pure functions.

Every function takes logits of shape (N, C) and, where needed, labels (N,) int64:

    accuracy(logits, labels)                      # top-1, a fraction
    agreement(student_logits, teacher_logits)     # same top-1 class, a fraction
    kl_teacher_student(teacher_logits, student_logits)   # mean KL(teacher || student) at T=1, nats
    expected_calibration_error(logits, labels)    # 15 equal-width confidence bins
    nll(logits, labels)                           # mean negative log-likelihood, nats
    confusion_matrix(logits, labels, classes)     # counts[true class][predicted class]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CALIBRATION_BINS = 15


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """How often the student's top-1 class is the teacher's (fidelity in the top-1 sense)."""
    return (student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean().item()


def kl_teacher_student(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Mean over images of KL(softmax(teacher) || softmax(student)) at T=1, in nats."""
    teacher_log_probs = F.log_softmax(teacher_logits.float(), dim=1)
    student_log_probs = F.log_softmax(student_logits.float(), dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl.item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits.float(), labels).item()


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, bins: int = CALIBRATION_BINS
) -> float:
    """sum over confidence bins of (share of images) * |accuracy - mean confidence| (Guo 2017)."""
    rows = reliability(logits, labels, bins)
    total = sum(row["count"] for row in rows)
    return sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in rows)


def reliability(
    logits: torch.Tensor, labels: torch.Tensor, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """The non-empty bins of a reliability diagram: count, mean confidence, accuracy, bin edges."""
    confidence, predicted = F.softmax(logits.float(), dim=1).max(1)
    correct = (predicted == labels).float()
    # bin k holds confidences in (k/bins, (k+1)/bins]; a confidence of exactly 0 joins bin 0
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    rows = []
    for k in range(bins):
        members = index == k
        count = int(members.sum())
        if count:
            rows.append(
                {
                    "low": k / bins,
                    "high": (k + 1) / bins,
                    "count": count,
                    "confidence": confidence[members].mean().item(),
                    "accuracy": correct[members].mean().item(),
                }
            )
    return rows


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor, classes: int) -> list[list[int]]:
    """counts[t][p]: how many images of true class t were predicted as class p."""
    pairs = labels.long() * classes + logits.argmax(1)
    counts = torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
    return counts.tolist()


def student_report(
    student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
) -> dict[str, float]:
    """The student's metrics, and its fidelity to the teacher when teacher logits are given."""
    report = {
        "test_acc": accuracy(student_logits, labels),
        "nll": nll(student_logits, labels),
        "ece": expected_calibration_error(student_logits, labels),
    }
    if teacher_logits is not None:
        report |= {
            "teacher_acc": accuracy(teacher_logits, labels),
            "agreement": agreement(student_logits, teacher_logits),
            "kl_teacher_student": kl_teacher_student(teacher_logits, student_logits),
            "teacher_ece": expected_calibration_error(teacher_logits, labels),
            "teacher_nll": nll(teacher_logits, labels),
        }
    return report
