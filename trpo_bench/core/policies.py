"""Stochastic policies: a Gaussian MLP (continuous actions) and a categorical MLP (discrete).

A policy maps observations to the parameters of an action distribution (``dist_params``); the
distribution math is written out so the surrogate, the KL constraint and its Hessian are exact:

* Gaussian with state-independent log-std (the paper's locomotion policy, sec. 8.1 and app. D):
  ``KL(p||q) = sum_j [log s_q - log s_p + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2]``;
* categorical: ``KL(p||q) = sum_a p_a (log p_a - log q_a)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from trpo_bench.core.policy_kind import policy_kind

DistParams = tuple[Tensor, ...]
"""The parameters of a batch of action distributions: (mean, log_std) or (logits,)."""


def select_states(dist: DistParams, index: Tensor | slice) -> DistParams:
    """The distributions of the states ``index`` picks; a state-independent part (the
    Gaussian's log-std, one dimension) is shared by all states and kept whole."""
    return tuple(t[index] if t.dim() > 1 else t for t in dist)


class RunningNorm(nn.Module):
    """Observation normalisation by a running mean and variance (parallel-variance update)."""

    def __init__(self, dim: int, clip: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip
        # (mean, std) in the input's dtype, and what they were computed from: the statistics
        # change once per iteration, while a PPO update reads them in hundreds of minibatches.
        self._scaled: tuple[tuple, Tensor, Tensor] | None = None

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        x = x.to(torch.float64).reshape(-1, self.mean.shape[0])
        n = x.shape[0]
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var = (
            self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        ) / total
        self.count = total

    def forward(self, x: Tensor) -> Tensor:
        # The very operations of (x - mean) / sqrt(var + 1e-8), their constant part reused
        # until the buffers change (an update, a load_state_dict, a move to another device).
        key = (id(self.mean), self.mean._version, id(self.var), self.var._version, x.dtype)
        if self._scaled is None or self._scaled[0] != key:
            with torch.no_grad():
                mean = self.mean.to(x.dtype)
                std = torch.sqrt(self.var.to(x.dtype) + 1e-8)
            self._scaled = (key, mean, std)
        _, mean, std = self._scaled
        return ((x - mean) / std).clamp(-self.clip, self.clip)


def mlp(sizes: Sequence[int], out_scale: float = 1.0) -> nn.Sequential:
    """A tanh MLP; the last layer's weights are scaled by ``out_scale`` (small initial output)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    with torch.no_grad():
        last = layers[-1]
        assert isinstance(last, nn.Linear)
        last.weight.mul_(out_scale)
        last.bias.zero_()
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """Common interface of every policy in the suite."""

    discrete: bool

    def __init__(self, obs_dim: int, normalize_observations: bool = False) -> None:
        super().__init__()
        self.obs_norm = RunningNorm(obs_dim) if normalize_observations else None
        # First-order step rules (vpg) keep their optimizer here, as ValueFunction does.
        self.optimizer: torch.optim.Optimizer | None = None

    def preprocess(self, obs: Tensor) -> Tensor:
        return self.obs_norm(obs) if self.obs_norm is not None else obs

    @property
    def device(self) -> torch.device:
        """Where the weights live (``device`` config key); observations are moved here, and
        random draws, always made on the CPU from the CPU generator, too: a run on the GPU
        draws the same numbers as on the CPU."""
        return next(self.parameters()).device

    def forward(self, obs: Tensor) -> DistParams:
        """Same as :meth:`dist_params` (so ``torch.func.functional_call`` works on a policy)."""
        return self.dist_params(obs)

    def dist_params(self, obs: Tensor) -> DistParams:
        raise NotImplementedError

    def log_prob(self, params: DistParams, actions: Tensor) -> Tensor:
        raise NotImplementedError

    def kl(self, old: DistParams, new: DistParams) -> Tensor:
        """Per-state KL(old || new)."""
        raise NotImplementedError

    def entropy(self, params: DistParams) -> Tensor:
        raise NotImplementedError

    def sample(self, params: DistParams, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Standard noise for :meth:`sample_from_noise`, ``shape`` per action."""
        raise NotImplementedError

    def sample_from_noise(self, params: DistParams, noise: Tensor) -> Tensor:
        """An action per row drawn with the given noise: the same noise gives the same action
        (common random numbers across vine branches, sec. 5.2)."""
        raise NotImplementedError

    def mode(self, params: DistParams) -> Tensor:
        """The most likely action (deterministic evaluation)."""
        raise NotImplementedError

    def policy_parameters(self) -> list[nn.Parameter]:
        """The parameters the policy step changes (not the observation normaliser)."""
        return [p for p in self.parameters() if p.requires_grad]


class GaussianMLPPolicy(Policy):
    """Diagonal Gaussian: mean from a tanh MLP, log-std a free, state-independent vector."""

    discrete = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64,),
        log_std_init: float = 0.0,
        normalize_observations: bool = False,
    ) -> None:
        super().__init__(obs_dim, normalize_observations)
        self.mean_net = mlp([obs_dim, *hidden_sizes, act_dim], out_scale=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def dist_params(self, obs: Tensor) -> DistParams:
        return self.mean_net(self.preprocess(obs)), self.log_std

    def log_prob(self, params: DistParams, actions: Tensor) -> Tensor:
        mean, log_std = params
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def kl(self, old: DistParams, new: DistParams) -> Tensor:
        m0, ls0 = old
        m1, ls1 = new
        var0, var1 = torch.exp(2 * ls0), torch.exp(2 * ls1)
        return (ls1 - ls0 + (var0 + (m0 - m1).pow(2)) / (2 * var1) - 0.5).sum(-1)

    def entropy(self, params: DistParams) -> Tensor:
        mean, log_std = params
        per_dim = log_std + 0.5 * math.log(2 * math.pi * math.e)
        return per_dim.sum(-1).expand(mean.shape[:-1])

    def sample(self, params: DistParams, generator: torch.Generator | None = None) -> Tensor:
        mean, log_std = params
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(log_std) * noise.to(mean.device)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return torch.randn((*shape, self.log_std.shape[0]), generator=generator)

    def sample_from_noise(self, params: DistParams, noise: Tensor) -> Tensor:
        mean, log_std = params
        return mean + torch.exp(log_std) * noise.to(mean.device)

    def mode(self, params: DistParams) -> Tensor:
        return params[0]


class CategoricalMLPPolicy(Policy):
    """Softmax over a finite action set; logits from a tanh MLP."""

    discrete = True

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64,),
        normalize_observations: bool = False,
    ) -> None:
        super().__init__(obs_dim, normalize_observations)
        self.logits_net = mlp([obs_dim, *hidden_sizes, num_actions], out_scale=0.01)

    def dist_params(self, obs: Tensor) -> DistParams:
        return (torch.log_softmax(self.logits_net(self.preprocess(obs)), dim=-1),)

    def log_prob(self, params: DistParams, actions: Tensor) -> Tensor:
        (logp,) = params
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def kl(self, old: DistParams, new: DistParams) -> Tensor:
        (lp0,), (lp1,) = old, new
        return (torch.exp(lp0) * (lp0 - lp1)).sum(-1)

    def entropy(self, params: DistParams) -> Tensor:
        (logp,) = params
        return -(torch.exp(logp) * logp).sum(-1)

    def sample(self, params: DistParams, generator: torch.Generator | None = None) -> Tensor:
        (logp,) = params
        # Drawn on the CPU (the generator's device), whatever the policy's device.
        return torch.multinomial(torch.exp(logp).cpu(), 1, generator=generator).squeeze(-1)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    def sample_from_noise(self, params: DistParams, noise: Tensor) -> Tensor:
        # Inverse CDF: the first action whose cumulative probability exceeds the uniform.
        (logp,) = params
        cdf = torch.cumsum(torch.exp(logp.to(torch.float64)), dim=-1)
        action = torch.searchsorted(cdf, noise.to(cdf.device).unsqueeze(-1), right=True)
        action = action.squeeze(-1)
        return action.clamp(max=logp.shape[-1] - 1)

    def mode(self, params: DistParams) -> Tensor:
        return params[0].argmax(-1)


def paper_conv(obs_shape: Sequence[int], channels: int = 16) -> tuple[nn.Sequential, int]:
    """The paper's Atari torso (Table 3): two 4 x 4 convolutions of ``channels`` with stride 2
    and ReLUs over a ``(frames, height, width)`` stack, flattened; returns it and its width."""
    frames, height, width = obs_shape
    conv = nn.Sequential(
        nn.Conv2d(frames, channels, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Conv2d(channels, channels, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = conv(torch.zeros(1, frames, height, width)).shape[1]
    return conv, int(flat)


def frames_to_unit(frames: Tensor, offset: float = 0.0) -> Tensor:
    """uint8 frames (any layout) as floats in [0, 1], less ``offset`` (config key
    ``atari_frame_offset``; 0, the paper's: nothing is subtracted): what the network sees."""
    unit = frames.float() / 255.0
    return unit - offset if offset else unit


# Below this many frames a forward pass without gradients keeps the plain (NCHW) layout.
CHANNELS_LAST_MIN_BATCH = 128


class CategoricalCNNPolicy(CategoricalMLPPolicy):
    """The paper's Atari policy (Table 3): two convolutions of 16 channels with stride 2, a fully
    connected layer of 20 units, a softmax over the game's actions.

    Observations arrive as uint8 ``(frames, 52, 40)`` stacks and become floats in [0, 1] only
    here, inside the forward pass. Kernels are 4 x 4 and hidden activations ReLU (the paper
    does not give them); with 4 frames and 6 actions (Pong) that is 33,458 parameters, the
    paper's "about 33,500". ``frame_offset`` (config key ``atari_frame_offset``) is subtracted
    from the [0, 1] frames before the first convolution: the same function class (a change of
    that convolution's bias), a different optimisation.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        channels: int = 16,
        hidden: int = 20,
        frame_offset: float = 0.0,
    ) -> None:
        Policy.__init__(self, obs_dim=0)
        self.frame_offset = frame_offset
        conv, flat = paper_conv(obs_shape, channels)
        head = nn.Linear(hidden, num_actions)
        with torch.no_grad():
            head.weight.mul_(0.01)
            head.bias.zero_()
        self.logits_net = nn.Sequential(conv, nn.Linear(flat, hidden), nn.ReLU(), head)

    def preprocess(self, obs: Tensor) -> Tensor:
        # Channels-last (NHWC) input makes oneDNN's CPU convolutions use their fast layout:
        # measured on a 2-core EPYC, the forward + backward of a 512-frame chunk ran 1.6-2x
        # faster and a Fisher-vector product 1.7x (the update in benchmarks/bench_atari.py went
        # from 2.7 to 1.9 s per iteration). Converting the uint8 frames before the float cast
        # copies 4x fewer bytes. A forward pass without gradients over a small batch (picking
        # the actions of 16 envs) is faster in the plain layout (36 instead of 43 us per frame
        # at 16 frames) and gives the same numbers up to float rounding: bit for bit on some
        # CPUs, within 2 units in the last place on an AVX2-only EPYC (tests/test_atari.py).
        if obs.shape[0] < CHANNELS_LAST_MIN_BATCH and not torch.is_grad_enabled():
            return frames_to_unit(obs, self.frame_offset)
        return frames_to_unit(obs.contiguous(memory_format=torch.channels_last), self.frame_offset)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int],
    log_std_init: float = 0.0,
    normalize_observations: bool = False,
    frame_offset: float = 0.0,
) -> Policy:
    """The policy class that fits the spaces (:func:`~trpo_bench.core.policy_kind.policy_kind`);
    ``frame_offset`` applies to the CNN policy only."""
    kind = policy_kind(observation_space, action_space)
    obs_dim = int(math.prod(observation_space.shape))
    if kind == "cnn":
        return CategoricalCNNPolicy(
            observation_space.shape, int(action_space.n), frame_offset=frame_offset
        )
    if kind == "categorical":
        return CategoricalMLPPolicy(
            obs_dim, int(action_space.n), hidden_sizes, normalize_observations
        )
    return GaussianMLPPolicy(
        obs_dim,
        int(math.prod(action_space.shape)),
        hidden_sizes,
        log_std_init,
        normalize_observations,
    )
