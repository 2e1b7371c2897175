"""The research metrics: agreement, KL fidelity, calibration, NLL and confusion, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from kdcore.metrics import (
    accuracy,
    agreement,
    confusion_matrix,
    expected_calibration_error,
    kl_teacher_student,
    nll,
    reliability,
    student_report,
)


def test_agreement_counts_equal_top1_classes_whatever_the_labels():
    student = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    teacher = torch.tensor([[9.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    assert agreement(student, teacher) == 0.75
    assert agreement(teacher, teacher) == 1.0


def test_kl_is_zero_for_identical_outputs_and_matches_the_definition():
    generator = torch.Generator().manual_seed(0)
    teacher, student = (
        torch.randn(6, 4, generator=generator),
        torch.randn(6, 4, generator=generator),
    )
    assert kl_teacher_student(teacher, teacher) == pytest.approx(0.0, abs=1e-7)
    p, q = teacher.softmax(1), student.softmax(1)
    expected = (p * (p.log() - q.log())).sum(1).mean().item()
    assert kl_teacher_student(teacher, student) == pytest.approx(expected, rel=1e-5)
    assert kl_teacher_student(student, teacher) != pytest.approx(
        expected, rel=1e-3
    )  # not symmetric


def test_calibration_error_of_a_hand_made_case():
    # two images at confidence 0.9 (one right, one wrong), two at about 0.5 (both right)
    high = math.log(9 * 9)  # softmax([log 81, 0, ...]) over 10 classes: 81 / 90 = 0.9
    logits = torch.zeros(4, 10)
    logits[0, 0] = logits[1, 0] = high
    logits[2, 1] = logits[3, 1] = math.log(9)  # 9 / 18 = 0.5
    labels = torch.tensor([0, 3, 1, 1])
    bins = reliability(logits, labels)
    assert [(row["count"], round(row["confidence"], 4), row["accuracy"]) for row in bins] == [
        (2, 0.5, 1.0),
        (2, 0.9, 0.5),
    ]
    assert expected_calibration_error(logits, labels) == pytest.approx(0.5 * 0.5 + 0.5 * 0.4)


def test_a_perfectly_confident_and_right_model_is_calibrated():
    labels = torch.arange(10)
    logits = torch.eye(10) * 100
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-6)
    assert accuracy(logits, labels) == 1.0 and nll(logits, labels) == pytest.approx(0.0, abs=1e-6)


def test_student_report_has_the_teacher_keys_only_with_a_teacher():
    generator = torch.Generator().manual_seed(1)
    student, teacher = (
        torch.randn(20, 10, generator=generator),
        torch.randn(20, 10, generator=generator),
    )
    labels = torch.randint(0, 10, (20,), generator=generator)
    alone = student_report(student, labels)
    assert set(alone) == {"test_acc", "nll", "ece"}
    both = student_report(student, labels, teacher)
    assert {"agreement", "kl_teacher_student", "teacher_ece", "teacher_acc"} <= set(both)
    assert both["nll"] == pytest.approx(torch.nn.functional.cross_entropy(student, labels).item())


def test_confusion_matrix_counts_true_class_rows_and_predicted_columns():
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    labels = torch.tensor([0, 1, 0, 2, 2])
    assert confusion_matrix(logits, labels, 3) == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
