"""Muon for conv filters beside SGD for the rest, after airbench94_muon (Keller Jordan, 2024).

A parameter group with `orthogonal=True` takes Muon steps: its Nesterov momentum (coefficient
`muon_momentum`, which the one-cycle schedule leaves alone) is reshaped to (out, in * k * k) and
replaced by the nearest semi-orthogonal matrix, found by a few Newton-Schulz iterations; the
filter is first rescaled to a norm of sqrt(out), so a step of `lr` turns it by about `lr`
whatever its size. Such groups have no weight decay: the rescaling holds their norm instead.
Every other group takes torch's own SGD steps (Nesterov, coupled weight decay).

    optimizer = MuonSGD([
        {"params": filters, "lr": 0.015, "orthogonal": True, "muon_momentum": 0.95},
        {"params": others, "lr": 0.08, "weight_decay": 3e-3},
    ], momentum=0.9)
"""

from __future__ import annotations

import torch
from torch.optim.sgd import sgd

NEWTON_SCHULZ_STEPS = 5
# the quintic iteration's coefficients (Jordan et al., 2024): they push every singular value of a
# matrix of spectral norm <= 1 into roughly [0.7, 1.2] in a few steps
_A, _B, _C = 3.4445, -4.7750, 2.0315


def orthogonalise(
    matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """About U V^T for matrix = U S V^T: every singular value moved near 1, by iterating in
    `dtype` (bf16 where the hardware multiplies it natively, as Muon does on GPUs)."""
    if matrix.ndim != 2:
        raise ValueError(f"Expected a matrix, got shape {tuple(matrix.shape)}.")
    x = matrix.to(dtype)
    x = x / (x.norm() + 1e-7)  # the spectral norm is at most the Frobenius norm: now <= 1
    wide = x.size(0) <= x.size(1)
    if not wide:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = _A * x + (_B * gram + _C * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class MuonSGD(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        matmul_dtype: torch.dtype = torch.float32,
    ):
        self.matmul_dtype = matmul_dtype
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "orthogonal": False,
            "muon_momentum": momentum,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["orthogonal"] and group["weight_decay"]:
                raise ValueError("Muon groups hold their norm instead of decaying it.")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["orthogonal"]:
                for parameter in params:
                    self._muon_step(parameter, group)
                continue
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgd(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"],
                momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=True,
                maximize=False)  # fmt: skip
            for parameter, buffer in zip(params, buffers, strict=True):
                self.state[parameter]["momentum_buffer"] = buffer
        return loss

    def _muon_step(self, parameter: torch.Tensor, group: dict) -> None:
        grad, momentum, state = parameter.grad, group["muon_momentum"], self.state[parameter]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.detach().clone()
        else:
            state["momentum_buffer"].mul_(momentum).add_(grad)
        update = grad.add(state["momentum_buffer"], alpha=momentum)  # Nesterov
        parameter.mul_(len(parameter) ** 0.5 / (parameter.norm() + 1e-12))
        matrix = update.reshape(len(update), -1)
        parameter.add_(orthogonalise(matrix, dtype=self.matmul_dtype).view_as(parameter),
                       alpha=-group["lr"])  # fmt: skip
