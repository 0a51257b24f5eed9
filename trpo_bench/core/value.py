"""A neural value function V(s), the baseline option for advantages (``baseline: value``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trpo_bench.core.adam import FusedAdamSteps
from trpo_bench.core.policies import RunningNorm, frames_to_unit, mlp, paper_conv
from trpo_bench.core.policy_kind import is_frame_stack

FRAME_CHUNK = 4096


class _Frames(nn.Module):
    """uint8 frames to floats in [0, 1] less ``offset``, as the CNN policy sees them."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, obs: Tensor) -> Tensor:
        return frames_to_unit(obs, self.offset)


class ValueFunction(nn.Module):
    """V(s) regressing discounted returns, fit by Adam on minibatches each iteration.

    On flat observations a tanh MLP of ``hidden_sizes``; on frame stacks (Atari's
    ``(frames, height, width)``) the policy's own torso (the paper's two convolutions,
    :func:`~trpo_bench.core.policies.paper_conv`, its own weights) followed by that MLP. Frames
    are scaled to [0, 1] there, so ``normalize_observations`` applies to flat observations only,
    as it does for the policies.
    """

    def __init__(
        self,
        obs_shape: int | Sequence[int],
        hidden_sizes: Sequence[int],
        learning_rate: float,
        normalize_observations: bool = False,
        fused_adam: bool = False,
        frame_offset: float = 0.0,
    ) -> None:
        """``fused_adam`` (config key ``vf_fused_adam``): torch's fused Adam kernel (one pass
        per step instead of a few ops per parameter; the same update up to float rounding), on
        in ``ppo``'s preset for its 320 minibatch steps per iteration; the other presets keep
        the default implementation. ``frame_offset``: subtracted from the [0, 1] frames
        (config key ``atari_frame_offset``), as the policy does."""
        super().__init__()
        shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        self.obs_shape = shape
        self.frames = is_frame_stack(shape)
        if self.frames:
            conv, flat = paper_conv(shape)
            head = mlp([flat, *hidden_sizes, 1], out_scale=1.0)
            self.obs_norm = None
            self.net = nn.Sequential(_Frames(frame_offset), conv, *head)
        else:
            obs_dim = math.prod(shape)
            self.obs_norm = RunningNorm(obs_dim) if normalize_observations else None
            self.net = mlp([obs_dim, *hidden_sizes, 1], out_scale=1.0)
        kwargs = {"fused": True} if fused_adam else {}
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=learning_rate, **kwargs)
        # Why the last fit was undone ("" if it was kept): see :meth:`fit`.
        self.reject_reason = ""

    def forward(self, obs: Tensor) -> Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        return self.net(obs).squeeze(-1)

    @torch.no_grad()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """V for an array of observations of any leading shape."""
        # frames stay uint8 until the net's first layer
        x = torch.as_tensor(obs, dtype=None if self.frames else torch.float32, device=self.device)
        lead = x.shape[: x.dim() - len(self.obs_shape)]
        return self._chunked(x.reshape(-1, *self.obs_shape)).reshape(lead).double().cpu().numpy()

    def _chunked(self, obs: Tensor) -> Tensor:
        """V of a batch without gradients, frames in chunks of ``FRAME_CHUNK`` (a pixel batch's
        activations at once would take gigabytes; the rows are independent, so the same
        numbers)."""
        if not self.frames:
            return self(obs)
        return torch.cat([self(part) for part in obs.split(FRAME_CHUNK)])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _net_function(self) -> Callable[[Tensor], Tensor]:
        """``self.net`` as a function calling its layers' ops directly (``F.linear``,
        ``torch.tanh``: the same numbers without a module call per layer, which a fit's
        minibatches of 64 feel); ``self.net`` itself if it holds other modules."""
        if not all(isinstance(m, (nn.Linear, nn.Tanh)) for m in self.net):
            return self.net
        layers = [(m.weight, m.bias) if isinstance(m, nn.Linear) else None for m in self.net]

        def net(x: Tensor) -> Tensor:
            for layer in layers:
                x = torch.tanh(x) if layer is None else F.linear(x, *layer)
            return x

        return net

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
        # The same numbers as normalising and gathering each minibatch, with fewer small ops:
        # the normalisation is elementwise, so it is done once per fit, and each epoch gathers
        # the batch once in its random order, the minibatches then being contiguous slices.
        x = obs
        if self.obs_norm is not None:
            with torch.no_grad():
                x = self.obs_norm(obs)
        params, net = list(self.net.parameters()), self._net_function()
        adam = FusedAdamSteps(self.optimizer)  # optimizer.step() itself unless fused
        for _ in range(epochs):
            perm = torch.randperm(n, generator=generator)
            e_x, e_targets = x[perm], targets[perm]
            for start in range(0, n, minibatch):
                mb = slice(start, start + minibatch)
                loss = F.mse_loss(net(e_x[mb]).squeeze(-1), e_targets[mb])
                for p in params:  # Optimizer.zero_grad(set_to_none=True), without its overhead
                    p.grad = None
                loss.backward()
                adam.step()
        with torch.no_grad():
            loss = float((self._chunked(obs) - targets).pow(2).mean())
        finite = all(bool(torch.isfinite(p).all()) for p in self.net.parameters())
        if not (finite and math.isfinite(loss)):
            self.net.load_state_dict(old[0])
            self.optimizer.load_state_dict(old[1])
            what = "loss" if finite else "parameters"
            self.reject_reason = f"value fit undone: non-finite {what}"
        return loss
