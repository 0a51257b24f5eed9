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
from trpo_bench.envs.mujoco_vector import MujocoStepper, supports


@dataclass(frozen=True)
class EnvSpec:
    """One known environment: its gymnasium id, family and config defaults."""

    id: str
    family: str
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Any] = field(default_factory=dict)
    gym_id: str = ""  # the id gymnasium knows, when it differs (Atari: ALE/Pong-v5)


def _load_specs() -> dict[str, EnvSpec]:
    specs = {}
    for env_id, entry in load_preset("envs").items():
        specs[env_id] = EnvSpec(
            id=env_id,
            family=entry["family"],
            summary=entry.get("summary", ""),
            defaults=entry.get("defaults", {}) or {},
            paper=entry.get("paper", {}) or {},
            gym_id=entry.get("gym_id", env_id),
        )
    return specs


ENV_SPECS: dict[str, EnvSpec] = _load_specs()


def check_env_id(env_id: str) -> None:
    """Raise a :class:`ConfigError` naming the allowed ids if ``env_id`` is unknown."""
    if env_id not in ENV_SPECS:
        raise ConfigError(f"unknown env {env_id!r} (allowed: {', '.join(ENV_SPECS)})")


def env_options(cfg: Any) -> dict[str, Any]:
    """The construction options a config sets for its env (Atari preprocessing; else none)."""
    if ENV_SPECS[cfg.env].family != "atari":
        return {}
    return {
        "frame_skip": cfg.atari_frame_skip,
        "frame_stack": cfg.atari_frame_stack,
        "sticky_actions": cfg.atari_sticky_actions,
    }


def make_env(env_id: str, options: Mapping[str, Any] | None = None) -> gym.Env:
    """Build one environment with gymnasium's standard wrappers (time limit included).

    ``options`` come from :func:`env_options` (Atari preprocessing, see ``trpo_bench.envs.atari``).
    """
    check_env_id(env_id)
    spec = ENV_SPECS[env_id]
    if spec.family == "atari":
        from trpo_bench.envs.atari import make_atari_env

        return make_atari_env(spec.gym_id, **(options or {}))
    return gym.make(spec.gym_id, disable_env_checker=True)


def _mujoco_stepper(
    env_id: str, envs: list[gym.Env], options: Mapping[str, Any]
) -> MujocoStepper | None:
    """The vector stepper for ``envs`` when their task has one and ``options`` allow it."""
    use = options.get("mujoco_vector", True)
    if use not in (True, False):
        raise ConfigError(
            f"env option 'mujoco_vector': {use!r} is not allowed (allowed: true, false)"
        )
    if not use or ENV_SPECS[env_id].family != "mujoco" or not all(map(supports, envs)):
        return None
    return MujocoStepper(envs)


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

    MuJoCo tasks that :mod:`trpo_bench.envs.mujoco_vector` reproduces bit for bit (the paper's
    cart-pole, swimmer, hopper, walker; HalfCheetah) are stepped by it, past gymnasium's Python
    step, with the same results; option ``mujoco_vector: False`` keeps gymnasium's step. The
    envs in ``self.envs`` are gymnasium's either way (snapshots, restores and gymnasium's own
    ``step`` work on them).
    """

    def __init__(
        self, env_id: str, num_envs: int, options: Mapping[str, Any] | None = None
    ) -> None:
        self.env_id = env_id
        self.options = dict(options or {})
        self.envs = [make_env(env_id, self.options) for _ in range(num_envs)]
        self._mujoco = _mujoco_stepper(env_id, self.envs, self.options)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        # Pixels stay uint8 (4x smaller than float32); vectors are kept as float64.
        obs_dtype = np.uint8 if self.observation_space.dtype == np.uint8 else np.float64
        self.obs = np.zeros((num_envs, *self.observation_space.shape), dtype=obs_dtype)
        if not self.discrete:
            self._low = self.action_space.low.astype(np.float64)
            self._high = self.action_space.high.astype(np.float64)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    @property
    def mujoco_stepper(self) -> MujocoStepper | None:
        """The vector stepper of these envs (None: gymnasium's step), for loops of their own
        that step envs one by one (the derivative-free search's candidate evaluation)."""
        return self._mujoco

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every env with its own seed; later resets continue each env's own RNG."""
        for i, (env, s) in enumerate(zip(self.envs, seeds, strict=True)):
            self.obs[i], _ = env.reset(seed=int(s))
        return self.obs

    def step(self, actions: np.ndarray, n: int | None = None) -> StepResult:
        """Step the first ``n`` envs (all by default) with ``actions[:n]``."""
        n = self.num_envs if n is None else n
        if self._mujoco is not None:
            # np.clip's values (NaN kept) without its Python wrapper: min(max(a, low), high)
            actions = np.minimum(np.maximum(actions, self._low), self._high)
            return self._step_mujoco(actions, n)
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
                final_obs[i] = np.asarray(o, dtype=obs.dtype)
                o, _ = env.reset()
            obs[i] = o
        return StepResult(obs, reward, terminated, truncated, final_obs)

    def step_subset(self, actions: np.ndarray, indices: np.ndarray) -> StepResult:
        """Step ``envs[indices[j]]`` with ``actions[j]``, without resetting envs whose episode
        ends (a vine branch ends with its episode). The envs' observations land in ``self.obs``;
        ``next_obs`` is None and the other arrays follow ``indices``."""
        if not self.discrete:
            actions = np.clip(actions, self._low, self._high)
        if self._mujoco is not None:
            obs = np.empty((len(indices), *self.obs.shape[1:]))
            reward, terminated, truncated = self._mujoco.step(actions, indices, obs)
            self.obs[indices] = obs
            return StepResult(None, reward, terminated, truncated, {})
        n = len(indices)
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for j, i in enumerate(indices):
            o, reward[j], terminated[j], truncated[j], _ = self.envs[i].step(actions[j])
            self.obs[i] = o
        return StepResult(None, reward, terminated, truncated, {})

    def _step_mujoco(self, actions: np.ndarray, n: int) -> StepResult:
        """:meth:`step` through :class:`~trpo_bench.envs.mujoco_vector.MujocoStepper`."""
        obs = self.obs
        reward, terminated, truncated = self._mujoco.step(actions, range(n), obs)
        final_obs: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(terminated | truncated).tolist():
            final_obs[i] = obs[i].copy()
            obs[i] = self._mujoco.reset_one(i)
        return StepResult(obs, reward, terminated, truncated & ~terminated, final_obs)

    def close(self) -> None:
        for env in self.envs:
            env.close()
