"""The study's distillation loss (Hinton et al.), as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_distillation_settings(temperature: float, alpha: float) -> None:
    """Raise ValueError with a clear message for a temperature or alpha that makes no sense."""
    if not temperature > 0:
        raise ValueError(f"Temperature T must be greater than 0 (got {temperature}).")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs the soft term and must lie in [0, 1] (got {alpha}).")


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over classes: (B, C) -> (B, C)."""
    return F.softmax(logits.float() / temperature, dim=-1)


def distillation_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    T: float = 2.0,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The named terms of the study's loss: `soft` (KL * T^2), `hard` (CE) and their mix `loss`.

    `soft` is PyTorch's `kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean")`, that is
    KL(teacher || student) per sample averaged over the batch, scaled by T^2 so its gradients keep
    their size as T changes. `label_smoothing` smooths the labels of the hard term only (the
    study's loss: 0).
    """
    check_distillation_settings(T, alpha)
    student_log_probs = F.log_softmax(student_logits.float() / T, dim=-1)
    teacher_probs = soft_targets(teacher_logits.detach(), T)  # a target: no gradient to the teacher
    soft = F.kl_div(student_log_probs, teacher_probs, reduction="batchmean")
    soft = soft * (T * T)
    hard = F.cross_entropy(student_logits.float(), targets, label_smoothing=label_smoothing)
    return {"loss": alpha * soft + (1.0 - alpha) * hard, "soft": soft, "hard": hard}


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    T: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """`alpha * KL(softmax(s/T), softmax(t/T)) * T^2 + (1 - alpha) * CE(s, y)`, KL `batchmean`.

    >>> s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    >>> distillation_loss(s, t, y, T=4.0, alpha=0.9).shape
    torch.Size([])
    """
    return distillation_terms(student_logits, teacher_logits, targets, T, alpha)["loss"]
