"""MuJoCo tasks stepped past gymnasium's per-step Python cost, bit-identical to gymnasium's v5.

A gymnasium MuJoCo step goes through ``TimeLimit.step -> OrderEnforcing.step -> <Task>Env.step
-> MujocoEnv.do_simulation`` and builds an info dict of numpy scalars; on Hopper-v5 about 40%
of raw gymnasium's step with random actions is not physics (``mj_step`` alone runs about 1.75x
gymnasium's rate). :class:`MujocoStepper` steps the *same* envs (the
``MjModel``/``MjData`` of envs built by ``gym.make``) with one loop of ``ctrl[:] = a;
mj_step(model, data, nstep=frame_skip)`` per env, then computes observations, rewards and
terminations for all envs at once in numpy, with the same floating-point operations, in the
same order, as gymnasium's v5 sources (``gymnasium/envs/mujoco/<task>_v5.py``):

* observation: ``qpos[skip:]`` (the x, or x and y, positions left out) followed by ``qvel``,
  clipped to [-10, 10] on Hopper and Walker2d;
* reward: ``w_fwd * (x_after - x_before) / dt`` (+ ``is_healthy * healthy_reward``)
  ``- w_ctrl * sum(a ** 2)``; InvertedPendulum: 1 while the pole is up, else 0;
* termination: the task's healthy check (Hopper: state, height and angle ranges; Walker2d:
  height and angle; InvertedPendulum: a finite observation and ``|angle| <= 0.2``); Swimmer
  and HalfCheetah never terminate;
* truncation: gymnasium's ``TimeLimit`` counter, kept in the wrapper itself.

Everything that persists between steps stays where gymnasium keeps it (``MjData``, the
``TimeLimit`` counter, the env's ``np_random``), so :mod:`trpo_bench.envs.restore` snapshots and
restores these envs unchanged, an env can still be stepped through gymnasium (the evaluation
protocol does), and resets go through the env's own ``reset`` (noise drawn from ``np_random``
in gymnasium's order). What is skipped is ``mj_rnePostConstraint`` after each step: it only
fills ``cacc``/``cfrc_int``/``cfrc_ext``, which none of these tasks reads, which is not part of
the saved state (``restore.py``) and which ``mj_step`` does not read
(``tests/test_mujoco_vector.py`` checks 10,000 random steps with resets
bit for bit against gymnasium).

The task parameters (weights, ranges, frame skip, time limit) are read from each env, not
copied here, so they follow the envs as ``gym.make`` builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.wrappers import OrderEnforcing, TimeLimit

# The unwrapped classes this module reproduces (exact types: a subclass may change a step).
SUPPORTED: tuple[type, ...] = (
    InvertedPendulumEnv,
    SwimmerEnv,
    HopperEnv,
    Walker2dEnv,
    HalfCheetahEnv,
)


@dataclass(frozen=True)
class TaskTerms:
    """The per-task constants of a step, read from one gymnasium env."""

    skip: int  # leading qpos entries left out of the observation
    qvel_clip: float | None  # observation clips qvel to [-clip, clip]
    forward_weight: float | None  # None: no forward-velocity reward (InvertedPendulum)
    ctrl_weight: float
    healthy_reward: float | None  # added when healthy (Hopper, Walker2d)
    terminate_when_unhealthy: bool
    z_range: tuple[float, float] | None
    angle_range: tuple[float, float] | None
    state_range: tuple[float, float] | None  # Hopper: every qpos[2:], qvel inside
    pendulum: bool  # InvertedPendulum's reward and termination


def task_terms(core: gym.Env) -> TaskTerms:
    """The step constants of an unwrapped v5 env; a ``ValueError`` for unsupported ones."""
    kind = type(core)
    if kind not in SUPPORTED:
        raise ValueError(
            f"no vector stepping for {kind.__name__} (supported: "
            f"{', '.join(k.__name__ for k in SUPPORTED)})"
        )
    if kind is InvertedPendulumEnv:
        return TaskTerms(0, None, None, 0.0, None, True, None, None, None, pendulum=True)
    exclude = bool(core._exclude_current_positions_from_observation)
    locomotion = kind in (HopperEnv, Walker2dEnv)
    return TaskTerms(
        skip=(2 if kind is SwimmerEnv else 1) * exclude,
        qvel_clip=10.0 if locomotion else None,
        forward_weight=core._forward_reward_weight,
        ctrl_weight=core._ctrl_cost_weight,
        healthy_reward=core._healthy_reward if locomotion else None,
        terminate_when_unhealthy=bool(getattr(core, "_terminate_when_unhealthy", False)),
        z_range=tuple(core._healthy_z_range) if locomotion else None,
        angle_range=tuple(core._healthy_angle_range) if locomotion else None,
        state_range=tuple(core._healthy_state_range) if kind is HopperEnv else None,
        pendulum=False,
    )


def supports(env: gym.Env) -> bool:
    """Whether ``env`` (as ``gym.make`` builds it, no env checker) can be vector-stepped:
    a supported v5 task under exactly ``TimeLimit(OrderEnforcing(task))``."""
    return (
        isinstance(env, TimeLimit)
        and type(env.env) is OrderEnforcing
        and type(env.env.env) in SUPPORTED
    )


def _within(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    low, high = bounds
    return np.logical_and(low < x, x < high)


class MujocoStepper:
    """Steps a list of gymnasium v5 MuJoCo envs of one task without their Python step.

    Observations, rewards, terminations and truncations equal gymnasium's bit for bit; the
    envs' state lives where gymnasium keeps it (see the module docstring).
    """

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        bad = [type(e).__name__ for e in envs if not supports(e)]
        if bad or not envs:
            raise ValueError(
                f"cannot vector-step {bad or 'an empty list'} (supported: TimeLimit(Order"
                f"Enforcing(env)) of {', '.join(k.__name__ for k in SUPPORTED)})"
            )
        cores = [e.unwrapped for e in envs]
        if len({type(c) for c in cores}) != 1:
            raise ValueError("all envs of a MujocoStepper must be the same task")
        self.envs = list(envs)
        self.cores = cores
        self.terms = task_terms(cores[0])
        self.models = [c.model for c in cores]
        self.datas = [c.data for c in cores]
        # Per env: its model, data, views into the data's buffers (mj_step, mj_setState and
        # resets write in place) and its TimeLimit wrapper (which keeps the step counter).
        self._slots = [
            (c.model, c.data, c.data.qpos, c.data.qvel, c.data.ctrl, e)
            for c, e in zip(cores, envs, strict=True)
        ]
        self.frame_skip = int(cores[0].frame_skip)
        self.dt = cores[0].dt  # timestep * frame_skip, the same Python float as the env's
        self.nq, self.nv = self.models[0].nq, self.models[0].nv
        self.obs_dim = self.nq - self.terms.skip + self.nv
        self.max_steps = [int(e._max_episode_steps) for e in envs]
        n = len(envs)
        self._qpos_buf = np.empty((n, self.nq))
        self._qvel_buf = np.empty((n, self.nv))
        self._x_before = np.empty(n)
        self._elapsed = np.empty(n, dtype=np.int64)
        self._limit = np.asarray(self.max_steps, dtype=np.int64)

    def step(
        self, actions: np.ndarray, indices: Sequence[int], obs_out: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``envs[indices[j]]`` with ``actions[j]`` (float64, already clipped to the action
        space, as ``EnvVector`` passes them to gymnasium). Writes each env's observation to
        ``obs_out[j]`` and returns (reward, terminated, truncated) as arrays over ``indices``.
        Envs whose episode ended are not reset."""
        m = len(indices)
        qpos, qvel, x_before, elapsed = (
            self._qpos_buf[:m],
            self._qvel_buf[:m],
            self._x_before[:m],
            self._elapsed[:m],
        )
        fs = self.frame_skip
        step = mujoco.mj_step
        slots = self._slots
        for j, i in enumerate(indices):
            model, data, q, v, ctrl, limit = slots[i]
            x_before[j] = q[0]
            ctrl[:] = actions[j]
            step(model, data, fs)
            qpos[j] = q
            qvel[j] = v
            count = limit._elapsed_steps + 1
            limit._elapsed_steps = elapsed[j] = count
        reward, terminated = self._rewards(actions[:m], qpos, qvel, x_before, obs_out[:m])
        prefix = isinstance(indices, range) and indices.start == 0 and indices.step == 1
        truncated = elapsed >= (self._limit[:m] if prefix else self._limit[np.asarray(indices)])
        return reward, terminated, truncated

    def _rewards(
        self,
        actions: np.ndarray,
        qpos: np.ndarray,
        qvel: np.ndarray,
        x_before: np.ndarray,
        obs: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Observation (into ``obs``), reward and termination, each as gymnasium computes it."""
        t = self.terms
        k = self.nq - t.skip
        obs[:, :k] = qpos[:, t.skip :]
        obs[:, k:] = qvel
        if t.qvel_clip is not None:  # np.clip(qvel, -c, c), NaN kept, without its wrapper
            velocity = obs[:, k:]
            np.maximum(velocity, -t.qvel_clip, out=velocity)
            np.minimum(velocity, t.qvel_clip, out=velocity)
        if t.pendulum:
            terminated = ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)
            return (~terminated).astype(np.float64), terminated
        forward = t.forward_weight * ((qpos[:, 0] - x_before) / self.dt)
        # np.sum over each row: numpy's pairwise sum, the same order as on gymnasium's 1-D action
        ctrl_cost = t.ctrl_weight * np.add.reduce(np.square(actions), axis=1)
        if t.healthy_reward is None:
            return forward - ctrl_cost, np.zeros(len(obs), dtype=bool)
        healthy = _within(qpos[:, 1], t.z_range) & _within(qpos[:, 2], t.angle_range)
        if t.state_range is not None:  # concatenate(qpos, qvel)[2:] inside the range
            healthy &= np.logical_and.reduce(_within(qpos[:, 2:], t.state_range), axis=1)
            healthy &= np.logical_and.reduce(_within(qvel, t.state_range), axis=1)
        reward = (forward + healthy * t.healthy_reward) - ctrl_cost
        return reward, ~healthy if t.terminate_when_unhealthy else np.zeros_like(healthy)

    def reset_one(self, i: int) -> np.ndarray:
        """Reset env ``i`` without a seed (its ``np_random`` goes on), as gymnasium's
        ``env.reset()`` does: the time limit's counter to 0, then the task's own reset."""
        self.envs[i]._elapsed_steps = 0
        obs, _ = self.cores[i].reset()
        return obs
