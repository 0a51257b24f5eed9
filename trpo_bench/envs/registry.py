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
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np

from trpo_bench import plugins
from trpo_bench.config import ConfigError, load_preset
from trpo_bench.core.policy_kind import POLICY_NAMES, policy_kind
from trpo_bench.envs.mujoco_vector import MujocoStepper, supports
from trpo_bench.envs.restore import (
    EnvSnapshot,
    has_mujoco_state,
    is_atari,
    restore,
    restore_problem,
    snapshot,
)

FAMILIES = ("mujoco", "classic", "atari", "other")
"""How an env is built, stepped and restored; and the key of its resources and rates."""

INFERRED_DEFAULTS: Mapping[str, Any] = {
    "hidden_sizes": [64, 64],
    "num_envs": 8,
    "steps_per_iter": 5000,
    "iterations": 50,
}
"""The config of a run on an env no preset knows (overridable as any key: ``--set``, the
grid's ``overrides``): 250K env steps with a 64x64 network, the common choice of current
libraries for a task of unknown size."""


@dataclass(frozen=True)
class EnvSpec:
    """One environment: its gymnasium id, family and config defaults, and where they come
    from (``source``: ``built-in`` for ``presets/envs.yaml``, ``inferred`` for an id that
    gymnasium makes and no preset knows)."""

    id: str
    family: str
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Any] = field(default_factory=dict)
    gym_id: str = ""  # the id gymnasium knows, when it differs (Atari: ALE/Pong-v5)
    source: str = "built-in"
    time_limit: int | None = None  # gymnasium's max_episode_steps (inferred specs only)
    # A plug-in's published numbers, in config/reference.yaml's shape (sources, published_at,
    # entries, and `normalization: {random, best}` for this env): the tables show them.
    reference: Mapping[str, Any] = field(default_factory=dict)


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


ENV_PLUGIN_GROUP = "trpo_bench.envs"
"""The entry-point group through which a package registers env specs (docs/envs.md)."""
_SPEC_KEYS = ("family", "summary", "defaults", "paper", "gym_id", "reference")


def plugin_spec(name: str, obj: Any, origin: str, taken: Mapping[str, EnvSpec]) -> EnvSpec:
    """The :class:`EnvSpec` an entry point's object gives (an EnvSpec, a mapping of its
    fields, or a callable returning either), checked; raises with the reason otherwise."""
    if callable(obj) and not isinstance(obj, EnvSpec | Mapping):
        obj = obj()
    if isinstance(obj, Mapping):
        unknown = sorted(set(obj) - {"id", *_SPEC_KEYS})
        if unknown:
            raise ValueError(f"unknown spec keys {unknown} (allowed: id, {', '.join(_SPEC_KEYS)})")
        obj = EnvSpec(
            id=str(obj.get("id", name)),
            family=str(obj.get("family", "other")),
            summary=str(obj.get("summary", "")),
            defaults=dict(obj.get("defaults") or {}),
            paper=dict(obj.get("paper") or {}),
            gym_id=str(obj.get("gym_id") or obj.get("id", name)),
            reference=dict(obj.get("reference") or {}),
        )
    if not isinstance(obj, EnvSpec):
        raise TypeError(f"it names a {type(obj).__name__}, not an EnvSpec or a mapping")
    if obj.id != name:
        raise ValueError(f"the entry point is named {name!r} but the spec's id is {obj.id!r}")
    if obj.id in taken:
        raise ValueError(f"env {obj.id!r} is already registered ({taken[obj.id].source})")
    if obj.family not in FAMILIES:
        raise ValueError(f"family {obj.family!r} is not one of {', '.join(FAMILIES)}")
    return replace(obj, gym_id=obj.gym_id or obj.id, source=f"plug-in {origin}")


def plugin_specs(taken: Mapping[str, EnvSpec]) -> dict[str, EnvSpec]:
    """The env specs of the entry-point group; each one that fails is one warning line."""
    specs: dict[str, EnvSpec] = {}
    for spec in plugins.load_plugins(
        ENV_PLUGIN_GROUP,
        "env",
        lambda ep: plugin_spec(ep.name, ep.load(), plugins.origin(ep), {**taken, **specs}),
    ):
        specs[spec.id] = spec
    return specs


def _registry() -> dict[str, EnvSpec]:
    specs = _load_specs()
    specs.update(plugin_specs(specs))
    return specs


ENV_SPECS: dict[str, EnvSpec] = _registry()
"""The envs with a spec: built-in (``presets/envs.yaml``) and plug-ins (entry-point group
:data:`ENV_PLUGIN_GROUP`); any other gymnasium id gets an inferred one (:func:`env_spec`)."""
_INFERRED: dict[str, EnvSpec] = {}


def env_spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``: its preset's, else one inferred from the env itself
    (:func:`infer_spec`, once per process). A ConfigError if gymnasium cannot make it."""
    spec = ENV_SPECS.get(env_id) or _INFERRED.get(env_id)
    if spec is None:
        spec = _INFERRED[env_id] = infer_spec(env_id)
    return spec


def check_env_id(env_id: str) -> None:
    """Raise a :class:`ConfigError` if ``env_id`` is neither known nor makeable."""
    env_spec(env_id)


def family_of(core: gym.Env) -> str:
    """The family of an unwrapped env: ``mujoco`` (a MuJoCo model and data, whatever the class),
    ``classic`` (gymnasium's classic control), ``atari`` (ale-py), else ``other``."""
    if has_mujoco_state(core):
        return "mujoco"
    module = type(core).__module__
    if module.startswith("gymnasium.envs.classic_control"):
        return "classic"
    if is_atari(core):
        return "atari"
    return "other"


def _make_by_gymnasium(env_id: str) -> gym.Env:
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    return gym.make(env_id, disable_env_checker=True)


def infer_spec(env_id: str) -> EnvSpec:
    """The spec of an id no preset knows, from the env gymnasium makes for it (ids of the form
    ``module:Id`` import the module that registers them): its family (:func:`family_of`),
    :data:`INFERRED_DEFAULTS` as its config, its time limit. The policy follows from its
    spaces at training time (``trpo_bench.core.policies.make_policy``)."""
    try:
        env = _make_by_gymnasium(env_id)
    except Exception as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise ConfigError(
            f"unknown env {env_id!r}: gymnasium cannot make it ({reason}); known to trpo-bench: "
            f"{', '.join(ENV_SPECS)}; any id gymnasium registers works, `module:Id` imports "
            "the module that registers it"
        ) from None
    try:
        core = env.unwrapped
        family = family_of(core)
        limit = env.spec.max_episode_steps if env.spec is not None else None
        kind = type(core)
        try:
            policy = POLICY_NAMES[policy_kind(env.observation_space, env.action_space)]
        except TypeError as e:
            raise ConfigError(f"env {env_id!r}: {e}") from None
        summary = f"{kind.__module__}.{kind.__qualname__}; {policy}"
    finally:
        env.close()
    return EnvSpec(
        id=env_id,
        family=family,
        summary=summary,
        defaults=dict(INFERRED_DEFAULTS),
        gym_id=env_id,
        source="inferred",
        time_limit=limit,
    )


def restore_problem_of(env_id: str) -> str | None:
    """Why vine cannot branch on ``env_id`` (its envs cannot be restored exactly:
    :func:`trpo_bench.envs.restore.restore_problem`), or None. The envs with a preset are
    restored by their family; any other is probed once per process on an env it builds."""
    spec = env_spec(env_id)
    if spec.source == "built-in":  # their families restore exactly (tests/test_restore.py)
        return None
    if env_id not in _RESTORE_PROBLEMS:
        env = make_env(env_id)
        try:
            _RESTORE_PROBLEMS[env_id] = restore_problem(env)
        finally:
            env.close()
    return _RESTORE_PROBLEMS[env_id]


_RESTORE_PROBLEMS: dict[str, str | None] = {}


def env_spec_lines(env_id: str) -> list[str]:
    """What ``trpo-bench envs ID`` prints: the spec a run on ``env_id`` would use."""
    spec = env_spec(env_id)
    problem = restore_problem_of(env_id)
    where = {
        "built-in": "a preset (trpo_bench/presets/envs.yaml)",
        "inferred": "inferred from the env gymnasium makes (no preset)",
    }.get(spec.source, f"registered by {spec.source} (entry-point group {ENV_PLUGIN_GROUP})")
    limit = spec.time_limit
    if limit is None and spec.source != "inferred":
        try:
            limit = gym.spec(spec.gym_id or env_id).max_episode_steps
        except gym.error.Error:
            limit = None
    defaults = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "none"
    paper = ", ".join(f"{k}={v}" for k, v in spec.paper.items()) or "none (as the defaults)"
    return [
        f"env:        {spec.id}"
        + (f" (gymnasium id {spec.gym_id})" if spec.gym_id != spec.id else ""),
        f"spec:       {where}",
        f"family:     {spec.family} (its resources entry, rates and how it is stepped)",
        f"summary:    {spec.summary}",
        f"time limit: {limit if limit is not None else 'none (gymnasium sets none)'}",
        f"defaults:   {defaults} (override with --set or the grid's overrides)",
        f"paper:      {paper}",
        "vine:       " + ("exact restore: yes" if problem is None else f"refused: {problem}"),
    ]


def env_options(cfg: Any) -> dict[str, Any]:
    """The construction options a config sets for its env (Atari preprocessing; else none)."""
    if env_spec(cfg.env).family != "atari":
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
    spec = env_spec(env_id)
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
    if not use or env_spec(env_id).family != "mujoco" or not all(map(supports, envs)):
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
        self.companions: list[Any] = []  # vectors built for this one (vine's branch pool)
        # The episodes the last batch cut, when they go on across iterations (the sampler's:
        # trpo_bench.sampling.single_path.OpenEpisodes); None: each batch starts afresh.
        self.open_episodes: Any = None
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
        """The vector stepper of these envs (None: gymnasium's step)."""
        return self._mujoco

    @property
    def workers(self) -> int:
        """Env worker processes: none besides this one (``trpo_bench.envs.workers``)."""
        return 1

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

    def reset_some(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Reset ``envs[indices[j]]`` with ``seeds[j]``; their observations, stacked (not
        written to ``self.obs``: the derivative-free search keeps its own)."""
        return np.stack(
            [
                np.asarray(self.envs[i].reset(seed=int(s))[0])
                for i, s in zip(indices, seeds, strict=True)
            ]
        )

    def step_raw(
        self, actions: np.ndarray, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step ``envs[indices[j]]`` with ``actions[j]`` as given (no clipping, dtype kept: the
        search's float32 actions give gymnasium's control costs bit for bit), without resets:
        observations, rewards, terminated and truncated, as gymnasium's ``step`` gives them."""
        n = len(indices)
        if self._mujoco is not None:
            obs = np.empty((n, *self.obs.shape[1:]))
            reward, terminated, truncated = self._mujoco.step(actions, indices, obs)
            return obs, reward, terminated, truncated
        observations = []
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for j, i in enumerate(indices):
            o, reward[j], terminated[j], truncated[j], _ = self.envs[i].step(actions[j])
            observations.append(np.asarray(o))
        return np.stack(observations), reward, terminated, truncated

    def snapshot(self, indices: Sequence[int]) -> list[EnvSnapshot]:
        """The full state of each env in ``indices``, in order (``restore.snapshot``)."""
        return [snapshot(self.envs[i]) for i in indices]

    def restore(self, indices: Sequence[int], snaps: Sequence[EnvSnapshot]) -> None:
        """Put ``envs[indices[j]]`` into the state of ``snaps[j]`` (``restore.restore``)."""
        for i, snap in zip(indices, snaps, strict=True):
            restore(self.envs[i], snap)

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
        """Close the envs and the companion vectors (which close with this one)."""
        for companion in self.companions:
            companion.close()
        self.companions = []
        for env in self.envs:
            env.close()
