"""Lookahead with a rising pull, after airbench (Keller Jordan, 2024).

A slow copy of the model's floating-point state (weights and BatchNorm statistics) trails the
trained one. Every `EVERY` steps the slow copy moves towards the model by `1 - decay` and the model
jumps back onto it; `decay` grows as (step / total)^3, from nothing at the start to 0.95 a step at
the end, so early training is untouched and the last epochs average over their steps. `finish`
leaves the model on the slow copy.

    lookahead = Lookahead(model, total_steps)
    for step in range(1, total_steps + 1):
        ...  # one optimiser step
        lookahead.after_step(step)
    lookahead.finish()
"""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    EVERY = 5
    FINAL_DECAY = 0.95  # per step, at the end of training

    def __init__(self, model: nn.Module, total_steps: int) -> None:
        self.model = model
        self.total_steps = max(1, total_steps)
        self.slow = {
            name: value.detach().clone()
            for name, value in model.state_dict().items()
            if value.is_floating_point()
        }

    def decay(self, step: int) -> float:
        """How much of the slow copy a pull at `step` (1-based) keeps."""
        return self.FINAL_DECAY**self.EVERY * (step / self.total_steps) ** 3

    def after_step(self, step: int) -> None:
        if step % self.EVERY == 0:
            self._pull(self.decay(step))

    def finish(self) -> None:
        self._pull(1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().cpu().clone() for name, value in self.slow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.slow):
            raise ValueError("The saved lookahead state belongs to another model.")
        for name, value in state.items():
            self.slow[name].copy_(value)

    @torch.no_grad()
    def _pull(self, decay: float) -> None:
        current = self.model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(current[name], 1.0 - decay)
            current[name].copy_(slow)
