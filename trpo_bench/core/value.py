"""A neural value function V(s), the baseline option for advantages (``baseline: value``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from trpo_bench.core.policies import RunningNorm, mlp


class ValueFunction(nn.Module):
    """A tanh MLP regressing discounted returns, fit by Adam on minibatches each iteration."""

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int],
        learning_rate: float,
        normalize_observations: bool = False,
    ) -> None:
        super().__init__()
        self.obs_norm = RunningNorm(obs_dim) if normalize_observations else None
        self.net = mlp([obs_dim, *hidden_sizes, 1], out_scale=1.0)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=learning_rate)
        # Why the last fit was undone ("" if it was kept): see :meth:`fit`.
        self.reject_reason = ""

    def forward(self, obs: Tensor) -> Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        return self.net(obs).squeeze(-1)

    @torch.no_grad()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """V for an array of observations of any leading shape."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        lead = x.shape[:-1]
        return self(x.reshape(-1, x.shape[-1])).reshape(lead).double().cpu().numpy()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def fit(
        self, obs: Tensor, targets: Tensor, epochs: int, minibatch: int, generator: torch.Generator
    ) -> float:
        """Minimise the squared error to ``targets``; returns the final full-batch MSE.

        A fit that leaves the loss or the weights non-finite is undone (weights and Adam's
        moments as before it) and :attr:`reject_reason` says so, as a policy step's guard does
        (``trpo_bench.methods.steps.guard_step``); the non-finite loss is still returned.
        """
        self.reject_reason = ""
        old = copy.deepcopy((self.net.state_dict(), self.optimizer.state_dict()))
        n = obs.shape[0]
        for _ in range(epochs):
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n, minibatch):
                idx = perm[start : start + minibatch]
                loss = (self(obs[idx]) - targets[idx]).pow(2).mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        with torch.no_grad():
            loss = float((self(obs) - targets).pow(2).mean())
        finite = all(bool(torch.isfinite(p).all()) for p in self.net.parameters())
        if not (finite and math.isfinite(loss)):
            self.net.load_state_dict(old[0])
            self.optimizer.load_state_dict(old[1])
            what = "loss" if finite else "parameters"
            self.reject_reason = f"value fit undone: non-finite {what}"
        return loss
