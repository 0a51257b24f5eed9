"""Environments: the registry of known tasks, construction, and a vector of envs.

The suite steps several environments together (:class:`EnvVector`) so that the policy runs once
per step on the whole batch of observations. Episodes end in one of two ways, kept apart
everywhere downstream:

* **termination**: the MDP really ended (the hopper fell); the future return is 0;
* **truncation**: the episode was cut (time limit, or the end of the iteration's batch); the
  state still had a future, which a value function can bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from trpo_bench.config import ConfigError, load_preset


@dataclass(frozen=True)
class EnvSpec:
    """One known environment: its gymnasium id, family and config defaults."""

    id: str
    family: str
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Any] = field(default_factory=dict)


def _load_specs() -> dict[str, EnvSpec]:
    specs = {}
    for env_id, entry in load_preset("envs").items():
        specs[env_id] = EnvSpec(
            id=env_id,
            family=entry["family"],
            summary=entry.get("summary", ""),
            defaults=entry.get("defaults", {}) or {},
            paper=entry.get("paper", {}) or {},
        )
    return specs


ENV_SPECS: dict[str, EnvSpec] = _load_specs()


def check_env_id(env_id: str) -> None:
    """Raise a :class:`ConfigError` naming the allowed ids if ``env_id`` is unknown."""
    if env_id not in ENV_SPECS:
        raise ConfigError(f"unknown env {env_id!r} (allowed: {', '.join(ENV_SPECS)})")


def make_env(env_id: str) -> gym.Env:
    """Build one environment with gymnasium's standard wrappers (time limit included)."""
    check_env_id(env_id)
    return gym.make(env_id, disable_env_checker=True)


@dataclass
class StepResult:
    """What one vector step returns (arrays over the first ``n`` envs stepped)."""

    next_obs: np.ndarray  # observation each env is in now (after an automatic reset)
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: dict[int, np.ndarray]  # env index -> last observation of an episode that ended


class EnvVector:
    """A list of environments stepped in lockstep in this process.

    Cheaper than ``gymnasium.vector.SyncVectorEnv`` for our use: it can step a prefix of the
    envs (the last row of an exact step budget), keeps observations in one preallocated array,
    resets an env as soon as its episode ends and hands back the episode's final observation.
    """

    def __init__(self, env_id: str, num_envs: int) -> None:
        self.env_id = env_id
        self.envs = [make_env(env_id) for _ in range(num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.obs = np.zeros((num_envs, *self.observation_space.shape), dtype=np.float64)
        if not self.discrete:
            self._low = self.action_space.low.astype(np.float64)
            self._high = self.action_space.high.astype(np.float64)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every env with its own seed; later resets continue each env's own RNG."""
        for i, (env, s) in enumerate(zip(self.envs, seeds, strict=True)):
            self.obs[i], _ = env.reset(seed=int(s))
        return self.obs

    def step(self, actions: np.ndarray, n: int | None = None) -> StepResult:
        """Step the first ``n`` envs (all by default) with ``actions[:n]``."""
        n = self.num_envs if n is None else n
        if not self.discrete:
            actions = np.clip(actions, self._low, self._high)
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_obs: dict[int, np.ndarray] = {}
        obs = self.obs
        for i in range(n):
            env = self.envs[i]
            o, r, term, trunc, _ = env.step(actions[i])
            reward[i] = r
            if term or trunc:
                terminated[i], truncated[i] = term, trunc and not term
                final_obs[i] = np.asarray(o, dtype=np.float64)
                o, _ = env.reset()
            obs[i] = o
        return StepResult(obs, reward, terminated, truncated, final_obs)

    def close(self) -> None:
        for env in self.envs:
            env.close()
