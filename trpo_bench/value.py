"""A neural value function V(s), the baseline option for advantages (``baseline: value``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from trpo_bench.policies import RunningNorm, mlp


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

    def forward(self, obs: Tensor) -> Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        return self.net(obs).squeeze(-1)

    @torch.no_grad()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """V for an array of observations of any leading shape."""
        x = torch.as_tensor(obs, dtype=torch.float32)
        lead = x.shape[:-1]
        return self(x.reshape(-1, x.shape[-1])).reshape(lead).double().numpy()

    def fit(
        self, obs: Tensor, targets: Tensor, epochs: int, minibatch: int, generator: torch.Generator
    ) -> float:
        """Minimise the squared error to ``targets``; returns the final full-batch MSE."""
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
            return float((self(obs) - targets).pow(2).mean())
