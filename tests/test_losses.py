"""The distillation loss is the study's formula, checked against two written-out references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdcore.losses import (
    DEFAULT_ALPHA,
    DEFAULT_TEMPERATURE,
    check_distillation_settings,
    check_temperature,
    distillation_loss,
    distillation_terms,
    soft_targets,
)


def batch(seed: int = 0, size: int = 16, classes: int = 10):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(size, classes, generator=generator) * 3
    teacher = torch.randn(size, classes, generator=generator) * 3
    targets = torch.randint(0, classes, (size,), generator=generator)
    return student, teacher, targets


def study_loss(s, t, y, T, alpha):
    soft = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")
    return alpha * soft * T * T + (1 - alpha) * F.cross_entropy(s, y)


def explicit_soft_term(s, t, T):
    """sum_c p_t (log p_t - log p_s), averaged over the batch, times T^2."""
    p_t = torch.softmax(t / T, 1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, 1))).sum(1)
    return kl.sum() / len(s) * T * T


@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.5), (2.0, 0.9), (4.0, 0.3), (8.0, 0.7)])
def test_loss_equals_the_studys_formula(T, alpha):
    s, t, y = batch(seed=int(T))
    torch.testing.assert_close(distillation_loss(s, t, y, T, alpha), study_loss(s, t, y, T, alpha))


@pytest.mark.parametrize("T", [1.0, 3.0, 6.0])
def test_soft_term_equals_the_explicit_kl_sum(T):
    s, t, y = batch(seed=11)
    terms = distillation_terms(s, t, y, T, 0.5)
    torch.testing.assert_close(terms["soft"], explicit_soft_term(s, t, T))
    torch.testing.assert_close(terms["hard"], F.cross_entropy(s, y))
    torch.testing.assert_close(terms["loss"], 0.5 * terms["soft"] + 0.5 * terms["hard"])


def test_label_smoothing_smooths_only_the_hard_term():
    s, t, y = batch(seed=5)
    plain = distillation_terms(s, t, y, 2.0, 0.5)
    smoothed = distillation_terms(s, t, y, 2.0, 0.5, label_smoothing=0.2)
    smoothed_targets = F.one_hot(y, 10).float() * 0.8 + 0.2 / 10
    explicit_hard = -(smoothed_targets * torch.log_softmax(s, 1)).sum(1).mean()
    torch.testing.assert_close(smoothed["hard"], explicit_hard)
    torch.testing.assert_close(smoothed["soft"], plain["soft"])
    assert not torch.allclose(smoothed["hard"], plain["hard"])


def test_alpha_zero_is_pure_cross_entropy():
    s, t, y = batch(seed=1)
    torch.testing.assert_close(distillation_loss(s, t, y, T=4.0, alpha=0.0), F.cross_entropy(s, y))


def test_alpha_one_is_pure_soft_term():
    s, t, y = batch(seed=2)
    torch.testing.assert_close(
        distillation_loss(s, t, y, T=4.0, alpha=1.0), explicit_soft_term(s, t, 4.0)
    )


def test_identical_logits_give_zero_soft_term():
    s, _, y = batch(seed=3)
    terms = distillation_terms(s, s.clone(), y, T=3.0, alpha=0.5)
    assert terms["soft"].abs().item() < 1e-6
    assert terms["hard"].item() > 0


def test_soft_targets_are_a_distribution_that_flattens_with_temperature():
    logits = torch.tensor([[4.0, 1.0, 0.0]])
    cold, warm = soft_targets(logits, 1.0), soft_targets(logits, 10.0)
    torch.testing.assert_close(cold.sum(1), torch.ones(1))
    torch.testing.assert_close(cold, torch.softmax(logits, 1))
    assert warm.max() < cold.max()


def test_infinite_temperature_gives_uniform_soft_targets():
    logits = torch.tensor([[4.0, 1.0, -3.0, 0.0]])
    torch.testing.assert_close(soft_targets(logits, math.inf), torch.full((1, 4), 0.25))


@pytest.mark.parametrize("T", [0.0, -1.0, float("nan")])
def test_non_positive_temperature_is_refused(T):
    with pytest.raises(ValueError, match="Temperature T must be greater than 0"):
        check_temperature(T)
    with pytest.raises(ValueError, match="Temperature T must be greater than 0"):
        check_distillation_settings(T, 0.5)


@pytest.mark.parametrize("temperature", [math.inf, 1e30, 100.5])
def test_absurd_temperatures_are_refused_for_distillation_with_the_range(temperature):
    check_temperature(math.inf)  # softmax is defined there: uniform
    with pytest.raises(ValueError, match="Temperature T must be at most 100"):
        check_distillation_settings(temperature, 0.5)
    check_distillation_settings(100.0, 0.5)


def test_defaults_are_valid_settings():
    check_distillation_settings(DEFAULT_TEMPERATURE, DEFAULT_ALPHA)
    assert (DEFAULT_TEMPERATURE, DEFAULT_ALPHA) == (2.0, 0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match=r"alpha .* must lie in \[0, 1\]"):
        check_distillation_settings(2.0, alpha)


def test_gradient_reaches_the_student_only():
    s, t, y = batch(seed=4)
    s.requires_grad_(True)
    t.requires_grad_(True)
    distillation_loss(s, t, y, T=2.0, alpha=0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
