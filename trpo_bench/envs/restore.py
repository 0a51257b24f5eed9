"""Exact snapshot and restore of an environment's full state (needed by vine, sec. 5.2).

The vine sampler branches K rollouts from a state visited by a trunk rollout, so it must put a
simulator back into that state *exactly*: a restored env, given the same actions, must produce
bit-identical observations, rewards and episode ends. What that takes, per family:

* **MuJoCo** (``gymnasium.envs.mujoco.MujocoEnv``): ``mujoco.mj_getState`` / ``mj_setState``
  with ``mjSTATE_INTEGRATION`` (time, qpos, qvel, actuator activations, the constraint
  solver's warm start ``qacc_warmstart``, controls, applied forces, mocap, ...). Plain
  ``env.set_state(qpos, qvel)`` is NOT exact: it leaves the solver's warm start behind, the
  first step after it differs in the last bits and the difference grows chaotically (see
  ``tests/test_restore.py``). Quantities derived from the state (``xpos``, contacts) are not
  saved: the tasks of :data:`STATE_READERS` read only qpos/qvel between steps and ``mj_step``
  recomputes the rest. Any other MuJoCo task (Ant reads its torso's ``xpos``, left from the
  previous step's forward pass, before it steps) is snapshotted as a copy of its whole
  ``MjData`` (``mj_copyData``): exact whatever it reads, at the cost of a larger snapshot.
* **classic control** (CartPole): its state variables (``state``, ``steps_beyond_terminated``).
* **any env** whose unwrapped class defines ``snapshot_state() -> Any`` and
  ``restore_state(state) -> None`` (the hook for new envs; tests use it for a tiny MDP).

Around the core env: the wrappers' state that changes what a step returns (gymnasium's
``TimeLimit`` step counter, ``OrderEnforcing``'s reset flag, ``RecordEpisodeStatistics``'
running sums); an unknown wrapper is refused rather than silently restored inexactly. And the
env's ``np_random`` generator state, so that an env drawing random numbers in ``step`` draws
the same ones after a restore: the K branches of a vine state then share the environment's
randomness (common random numbers).

* **Atari** (ale-py): ``ale.cloneState(include_rng=True)`` / ``restoreState`` (the emulator with
  its sticky-action RNG: bit-exact, and a state's branches repeat the same sticky-action noise),
  plus the frame stack of ``trpo_bench.envs.atari.AtariPixels``.

A snapshot also travels as data (:func:`snapshot_to_data`, :func:`snapshot_from_data`): numbers,
strings, bytes and arrays only, so that a checkpoint holding the envs' states (episodes that run
on across iterations, ``continue_episodes``) is read without running anything. The Atari
emulator's state is its serialised bytes; the wrappers are named, not pickled.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, RecordEpisodeStatistics, TimeLimit

from trpo_bench.envs.atari import AtariPixels

_MJ_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
STATE_READERS: tuple[type, ...] = (
    InvertedPendulumEnv,
    SwimmerEnv,
    HopperEnv,
    Walker2dEnv,
    HalfCheetahEnv,
)
"""Tasks whose step reads only qpos/qvel before stepping (read in gymnasium's v5 sources):
the integration state restores them exactly."""


@dataclass(frozen=True)
class EnvSnapshot:
    """Everything needed to put an env of the same id back into one state."""

    family: str
    sim: Any  # the simulator state (MuJoCo: an array or an MjData copy; CartPole: its variables)
    wrappers: tuple[tuple[type, tuple[Any, ...]], ...]  # (wrapper type, its state), outermost first
    rng: dict[str, Any] | None  # the unwrapped env's np_random bit-generator state


class _Family(NamedTuple):
    name: str
    matches: Callable[[gym.Env], bool]
    get: Callable[[gym.Env], Any]
    set: Callable[[gym.Env, Any], None]
    # The simulator state as data (numbers, strings, bytes, arrays, containers) and back.
    to_data: Callable[[Any], Any] = lambda sim: sim
    from_data: Callable[[Any], Any] = lambda data: data


def has_mujoco_state(env: gym.Env) -> bool:
    """Whether ``env`` (unwrapped) simulates with MuJoCo: gymnasium's ``MujocoEnv`` or any class
    holding a ``mujoco.MjModel`` as ``model`` and its ``mujoco.MjData`` as ``data`` (a task of
    one's own, a package's robot), so ``mj_getState``/``mj_setState`` restore it exactly."""
    if isinstance(env, MujocoEnv):
        return True
    model, data = getattr(env, "model", None), getattr(env, "data", None)
    return isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData)


def _mujoco_get(env: gym.Env) -> Any:
    model, data = env.model, env.data
    if type(env) not in STATE_READERS:
        # A task that may read derived quantities before it steps (Ant reads its torso's xpos,
        # left from the previous step's forward pass): the whole MjData, exact whatever it reads.
        return copy.copy(data)
    state = np.empty(mujoco.mj_stateSize(model, _MJ_STATE))
    mujoco.mj_getState(model, data, state, _MJ_STATE)
    return state


def _mujoco_set(env: gym.Env, state: Any) -> None:
    if isinstance(state, mujoco.MjData):
        mujoco.mj_copyData(env.data, env.model, state)
    else:
        mujoco.mj_setState(env.model, env.data, state, _MJ_STATE)


def _mujoco_to_data(state: Any) -> Any:
    if isinstance(state, mujoco.MjData):
        raise TypeError(
            "its MuJoCo state is a copy of the whole MjData (a task outside "
            f"{', '.join(t.__name__ for t in STATE_READERS)}), which is not data"
        )
    return state


def _cartpole_get(env: gym.Env) -> tuple[Any, Any]:
    return np.array(env.state, dtype=np.float64, copy=True), env.steps_beyond_terminated


def _cartpole_set(env: gym.Env, sim: tuple[Any, Any]) -> None:
    env.state = sim[0].copy()
    env.steps_beyond_terminated = sim[1]


def is_atari(env: gym.Env) -> bool:
    """Whether ``env`` (unwrapped) is ale-py's Atari env."""
    return type(env).__name__ == "AtariEnv" and hasattr(env, "ale")


def _atari_get(env: gym.Env) -> Any:
    # include_rng: the sticky-action RNG is restored too, so a state's branches repeat the
    # same sticky-action noise (common random numbers); the default clone leaves it out.
    return env.ale.cloneState(include_rng=True)


def _atari_set(env: gym.Env, state: Any) -> None:
    env.ale.restoreState(state)


def _atari_to_data(state: Any) -> bytes:
    return state.serialize()


def _atari_from_data(data: bytes) -> Any:
    from ale_py import ALEState  # ale-py is imported where an Atari env exists

    return ALEState(data)


_FAMILIES: list[_Family] = [
    _Family(
        "custom",
        lambda env: hasattr(env, "snapshot_state") and hasattr(env, "restore_state"),
        lambda env: env.snapshot_state(),
        lambda env, sim: env.restore_state(sim),
    ),
    _Family("mujoco", has_mujoco_state, _mujoco_get, _mujoco_set, _mujoco_to_data),
    _Family("classic", lambda env: isinstance(env, CartPoleEnv), _cartpole_get, _cartpole_set),
    _Family("atari", is_atari, _atari_get, _atari_set, _atari_to_data, _atari_from_data),
]

_FAMILY_NAMED = {f.name: f for f in _FAMILIES}  # a snapshot's family by its name

# Wrapper attributes that change what later steps return; wrappers listed with () keep none.
_WRAPPER_STATE: dict[type, tuple[str, ...]] = {
    TimeLimit: ("_elapsed_steps",),
    OrderEnforcing: ("_has_reset",),
    RecordEpisodeStatistics: ("episode_returns", "episode_lengths", "episode_start_time"),
    PassiveEnvChecker: (),
    AtariPixels: ("frames",),  # the frame stack (copied: numpy arrays are copied by copy.copy)
}


_FAMILY_OF: dict[type, _Family] = {}  # env class -> its family, found once


def _family(env: gym.Env) -> _Family:
    family = _FAMILY_OF.get(type(env))
    if family is not None:
        return family
    for family in _FAMILIES:
        if family.matches(env):
            _FAMILY_OF[type(env)] = family
            return family
    raise TypeError(
        f"cannot snapshot {type(env).__module__}.{type(env).__qualname__}: restored exactly are "
        "MuJoCo envs (a mujoco.MjModel `model` and MjData `data`), CartPole and Atari; for "
        "another env, define snapshot_state() -> state and restore_state(state) on its class "
        "(docs/envs.md)"
    )


def _wrapper_chain(env: gym.Env) -> list[gym.Wrapper]:
    chain = []
    while isinstance(env, gym.Wrapper):
        if type(env) not in _WRAPPER_STATE:
            raise TypeError(
                f"cannot snapshot through wrapper {type(env).__name__} (known: "
                f"{', '.join(t.__name__ for t in _WRAPPER_STATE)})"
            )
        chain.append(env)
        env = env.env
    return chain


def restore_problem(env: gym.Env) -> str | None:
    """Why ``env`` (as ``envs.make_env`` builds it) cannot be snapshotted and restored exactly
    (one line naming the class or wrapper, and the hook to implement); None if it can."""
    try:
        _family(env.unwrapped)
        _wrapper_chain(env)
    except TypeError as e:
        return str(e)
    return None


def snapshot(env: gym.Env) -> EnvSnapshot:
    """The full state of ``env`` (the wrapped env as built by ``envs.make_env``)."""
    core = env.unwrapped
    family = _family(core)
    wrappers = tuple(
        (type(w), tuple(copy.copy(getattr(w, a)) for a in _WRAPPER_STATE[type(w)]))
        for w in _wrapper_chain(env)
    )
    rng = core._np_random  # None until the env's generator is first used
    return EnvSnapshot(
        family.name,
        family.get(core),
        wrappers,
        None if rng is None else rng.bit_generator.state,
    )


def restore(env: gym.Env, snap: EnvSnapshot) -> None:
    """Put ``env`` (built from the same env id as the snapshot's) into the snapshot's state.

    Afterwards ``env.step`` returns bit-for-bit what the snapshotted env returned from there.
    """
    core = env.unwrapped
    family = _family(core)
    if family.name != snap.family:
        raise TypeError(f"snapshot of a {snap.family} env cannot restore a {family.name} env")
    chain = _wrapper_chain(env)
    if [type(w) for w in chain] != [t for t, _ in snap.wrappers]:
        raise TypeError(
            "wrapper stack differs from the snapshot's: "
            f"{[type(w).__name__ for w in chain]} vs {[t.__name__ for t, _ in snap.wrappers]}"
        )
    family.set(core, snap.sim)
    for wrapper, (wtype, values) in zip(chain, snap.wrappers, strict=True):
        for attr, value in zip(_WRAPPER_STATE[wtype], values, strict=True):
            setattr(wrapper, attr, copy.copy(value))
    if snap.rng is not None:
        core.np_random.bit_generator.state = snap.rng


def snapshot_to_data(snap: EnvSnapshot) -> dict[str, Any]:
    """``snap`` as data only (see the module's docstring); :func:`snapshot_from_data` inverts
    it. Raises TypeError naming what is not data (a whole-MjData MuJoCo snapshot)."""
    family = _FAMILY_NAMED[snap.family]
    return {
        "family": snap.family,
        "sim": family.to_data(snap.sim),
        "wrappers": [[wtype.__name__, list(values)] for wtype, values in snap.wrappers],
        "rng": snap.rng,
    }


def snapshot_from_data(data: dict[str, Any]) -> EnvSnapshot:
    """The :class:`EnvSnapshot` that :func:`snapshot_to_data` wrote."""
    wrapper_types = {t.__name__: t for t in _WRAPPER_STATE}
    if data["family"] not in _FAMILY_NAMED:
        raise TypeError(
            f"snapshot of an unknown env family {data['family']!r} "
            f"(known: {', '.join(_FAMILY_NAMED)})"
        )
    unknown = [name for name, _ in data["wrappers"] if name not in wrapper_types]
    if unknown:
        raise TypeError(
            f"snapshot names unknown wrappers {unknown} (known: {', '.join(wrapper_types)})"
        )
    return EnvSnapshot(
        data["family"],
        _FAMILY_NAMED[data["family"]].from_data(data["sim"]),
        tuple((wrapper_types[name], tuple(values)) for name, values in data["wrappers"]),
        data["rng"],
    )
