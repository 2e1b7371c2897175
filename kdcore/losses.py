"""The study's distillation loss (Hinton et al.), as pure functions, and its settings' defaults.

The loss functions do not check T and alpha: whoever holds the settings checks them once with
`check_distillation_settings` (engine.Distillation does, at construction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 2.0
DEFAULT_ALPHA = 0.5
MAX_TEMPERATURE = 100.0


def check_temperature(temperature: float) -> None:
    """Raise ValueError unless T > 0. T = inf is allowed: softmax(z / inf) is uniform."""
    if not temperature > 0:
        raise ValueError(f"Temperature T must be greater than 0 (got {temperature}).")


def check_distillation_settings(temperature: float, alpha: float) -> None:
    """Raise ValueError with a clear message for a temperature or alpha that makes no sense."""
    check_temperature(temperature)
    if not temperature <= MAX_TEMPERATURE:
        raise ValueError(
            f"Temperature T must be at most {MAX_TEMPERATURE:g}: the soft term is scaled by T^2, "
            f"and beyond that every soft target is uniform (got {temperature})."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs the soft term and must lie in [0, 1] (got {alpha}).")


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dim, in float32: (..., C) -> (..., C).

    T = inf gives the uniform distribution, the limit as T grows (finite z / inf is 0).
    """
    return F.softmax(logits.float() / temperature, dim=-1)


def distillation_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    T: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The named terms of the study's loss: `soft` (KL * T^2), `hard` (CE) and their mix `loss`.

    `soft` is PyTorch's `kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean")`, that is
    KL(teacher || student) per sample averaged over the batch, scaled by T^2 so its gradients keep
    their size as T changes. `label_smoothing` smooths the labels of the hard term only (the
    study's loss: 0).
    """
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
    T: float,
    alpha: float,
) -> torch.Tensor:
    """`alpha * KL(softmax(s/T), softmax(t/T)) * T^2 + (1 - alpha) * CE(s, y)`, KL `batchmean`.

    >>> s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    >>> distillation_loss(s, t, y, T=4.0, alpha=0.9).shape
    torch.Size([])
    """
    return distillation_terms(student_logits, teacher_logits, targets, T, alpha)["loss"]
