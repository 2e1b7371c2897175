"""Lookahead pulls the weights towards a slow copy, harder as training ends, and ends on it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdcore.lookahead import Lookahead


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_the_pull_rises_from_nothing_to_the_final_decay():
    lookahead = Lookahead(small_model(), total_steps=100)
    decays = [lookahead.decay(step) for step in range(0, 101, 5)]
    assert decays[0] == 0.0
    assert decays == sorted(decays)
    assert decays[-1] == pytest.approx(0.95**5)
    assert lookahead.decay(50) == pytest.approx(0.95**5 / 8)  # cubic in the progress


def test_a_pull_moves_the_slow_copy_and_puts_the_model_on_it_every_fifth_step():
    model = small_model()
    lookahead = Lookahead(model, total_steps=10)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.add_(2.0)
    lookahead.after_step(4)  # not a pulling step: nothing moves
    assert torch.equal(model[0].weight, start + 1.0)
    lookahead.after_step(5)
    decay = lookahead.decay(5)
    expected = decay * start + (1 - decay) * (start + 1.0)
    torch.testing.assert_close(model[0].weight.detach(), expected)
    torch.testing.assert_close(lookahead.slow["0.weight"], expected)
    torch.testing.assert_close(model[1].running_mean, torch.full((4,), 2.0 * (1 - decay)))
    assert "1.num_batches_tracked" not in lookahead.slow  # integer counters are left alone


def test_finish_leaves_the_model_on_the_slow_copy():
    model = small_model()
    lookahead = Lookahead(model, total_steps=10)
    slow = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    lookahead.finish()
    assert torch.equal(model[0].weight.detach(), slow)


def test_its_state_round_trips_and_refuses_another_models():
    model = small_model()
    lookahead = Lookahead(model, total_steps=10)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    lookahead.after_step(10)
    saved = lookahead.state_dict()
    again = Lookahead(small_model(), total_steps=10)
    again.load_state_dict(saved)
    assert all(torch.equal(again.slow[name], value) for name, value in saved.items())
    with pytest.raises(ValueError, match="another model"):
        again.load_state_dict({"weight": torch.zeros(1)})
