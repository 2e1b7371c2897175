"""Muon's Newton-Schulz step orthogonalises, its groups step as stated, the rest steps as SGD does,
and the engine's `optimizer="muon"` puts exactly the conv filters in Muon groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdcore.engine import TrainConfig, build_optimizer, build_scheduler, evaluate, fit
from kdcore.models import CifarNet
from kdcore.muon import MuonSGD, orthogonalise


@pytest.mark.parametrize("shape", [(48, 216), (192, 1728), (300, 40)])
def test_orthogonalise_moves_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    rank = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], rank))
    v, _ = torch.linalg.qr(torch.randn(shape[1], rank))
    spread = torch.logspace(0, 1.5, rank)  # singular values from 1 to about 32
    matrix = u @ torch.diag(spread) @ v.T
    result = orthogonalise(matrix)
    assert result.shape == matrix.shape and result.dtype == matrix.dtype
    singular = torch.linalg.svdvals(result)
    assert singular.min() > 0.5 and singular.max() < 1.3, (singular.min(), singular.max())
    # the same directions: close to U V^T, the nearest semi-orthogonal matrix
    closeness = torch.nn.functional.cosine_similarity(result.flatten(), (u @ v.T).flatten(), 0)
    assert closeness > 0.95


def test_orthogonalise_in_bf16_returns_the_input_dtype_and_the_same_spread():
    torch.manual_seed(0)
    matrix = torch.randn(48, 216)
    result = orthogonalise(matrix, dtype=torch.bfloat16)
    assert result.dtype == torch.float32
    singular = torch.linalg.svdvals(result)
    assert singular.min() > 0.5 and singular.max() < 1.3, (singular.min(), singular.max())
    assert torch.allclose(result, orthogonalise(matrix), atol=0.05)


def test_orthogonalise_refuses_what_is_not_a_matrix():
    with pytest.raises(ValueError, match="matrix"):
        orthogonalise(torch.zeros(2, 3, 4))


def _two_copies(shape, seed=0):
    torch.manual_seed(seed)
    first = nn.Parameter(torch.randn(shape))
    return first, nn.Parameter(first.detach().clone())


def test_groups_without_muon_step_exactly_as_nesterov_sgd():
    ours, theirs = _two_copies((5, 3))
    mine = MuonSGD([{"params": [ours], "lr": 0.1, "weight_decay": 0.01}], momentum=0.9)
    sgd = torch.optim.SGD([theirs], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    for step in range(4):
        grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        mine.step()
        sgd.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_a_muon_group_renormalises_then_steps_along_the_orthogonalised_momentum():
    filters, expected = _two_copies((8, 4, 3, 3))
    optimizer = MuonSGD(
        [{"params": [filters], "lr": 0.05, "orthogonal": True, "muon_momentum": 0.8}],
        momentum=0.3,  # SGD's; a Muon group keeps its own
    )
    buffer = None
    for step in range(3):
        grad = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(step))
        filters.grad = grad.clone()
        optimizer.step()
        buffer = grad.clone() if buffer is None else buffer * 0.8 + grad
        nesterov = grad + 0.8 * buffer
        with torch.no_grad():
            expected.mul_(8**0.5 / expected.norm())
            expected.sub_(0.05 * orthogonalise(nesterov.reshape(8, -1)).view(8, 4, 3, 3))
    assert torch.allclose(filters, expected, atol=1e-5)
    # a step of lr turns the filters by about lr: the norm held at sqrt(8) plus one small step
    assert filters.detach().norm().item() == pytest.approx(8**0.5, rel=0.05)


def test_a_muon_group_refuses_weight_decay():
    with pytest.raises(ValueError, match="norm"):
        MuonSGD([{"params": [nn.Parameter(torch.ones(2, 2))], "orthogonal": True,
                  "weight_decay": 1e-3}])  # fmt: skip


def test_the_engine_gives_muon_the_conv_filters_and_sgd_the_rest():
    model = CifarNet(10)
    config = TrainConfig(epochs=1, optimizer="muon", lr=0.08, weight_decay=3e-3, muon_lr=0.02)
    built = build_optimizer(model, config)
    filters = {id(p) for p in model.parameters() if p.requires_grad and p.ndim == 4}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    muon = [g for g in built.param_groups if g["orthogonal"]]
    assert {id(p) for g in muon for p in g["params"]} == filters and len(filters) == 6
    assert all(g["lr"] == 0.02 and g["weight_decay"] == 0 for g in muon)
    others = [g for g in built.param_groups if not g["orthogonal"]]
    assert {id(p) for g in others for p in g["params"]} == trainable - filters
    assert built.param_groups[0]["lr"] == 0.08  # the lr every row logs is still `lr`'s
    assert sorted(g["lr"] for g in others) == pytest.approx([0.08, 0.08 * 64])
    scheduler = build_scheduler(built, config, steps_per_epoch=8)
    peaks = [0.0] * len(built.param_groups)
    for _ in range(8):
        peaks = [max(p, g["lr"]) for p, g in zip(peaks, built.param_groups, strict=True)]
        built.step()
        scheduler.step()
    assert peaks[-1] == pytest.approx(0.02)  # one-cycle scales Muon's lr too
    assert all(g["muon_momentum"] == 0.95 for g in muon)  # and leaves its momentum alone


@pytest.mark.parametrize(
    "fields, message",
    [({"muon_lr": 0}, "Muon's learning rate"), ({"muon_momentum": 1.0}, "Muon's momentum")],
)
def test_impossible_muon_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(optimizer="muon", **fields)


def test_cifarnet_learns_a_tiny_problem_with_muon(synthetic_train):
    torch.manual_seed(0)
    train = synthetic_train.subset(512, seed=0)
    model = CifarNet(10)
    before = evaluate(model, train, torch.device("cpu"))["acc"]
    config = TrainConfig(epochs=3, batch_size=64, optimizer="muon", lr=0.08, weight_decay=3e-3)
    fit(model, train, train, config, device=torch.device("cpu"))
    after = evaluate(model, train, torch.device("cpu"))["acc"]
    assert after > max(0.6, before + 0.3), (before, after)
