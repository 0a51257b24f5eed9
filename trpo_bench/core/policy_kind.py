"""Which policy fits an env's spaces (no torch: the env registry asks it before any run)."""

from __future__ import annotations

import gymnasium as gym

POLICY_NAMES = {
    "cnn": "categorical CNN policy (the paper's Atari network)",
    "categorical": "categorical MLP policy",
    "gaussian": "Gaussian MLP policy (state-independent log-std)",
}


def is_frame_stack(shape: tuple[int, ...]) -> bool:
    """Whether observations of ``shape`` are image stacks ``(frames, height, width)``, which
    the CNN policy and the value function's conv torso take."""
    return len(shape) == 3


def policy_kind(observation_space: gym.Space, action_space: gym.Space) -> str:
    """``cnn`` (image observations, discrete actions), ``categorical`` (discrete actions) or
    ``gaussian`` (continuous actions): the policy ``trpo_bench.core.policies.make_policy``
    builds. Other spaces raise a TypeError naming them and what is supported."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(
            f"unsupported observation space {observation_space} (supported: Box; flatten a "
            "Dict or Tuple space with gymnasium's FlattenObservation in the env's registration)"
        )
    if isinstance(action_space, gym.spaces.Discrete):
        return "cnn" if is_frame_stack(observation_space.shape) else "categorical"
    if isinstance(action_space, gym.spaces.Box):
        return "gaussian"
    raise TypeError(f"unsupported action space {action_space} (supported: Discrete, Box)")
