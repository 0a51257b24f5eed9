"""The vector MuJoCo stepper (trpo_bench.envs.mujoco_vector) against gymnasium's v5 envs, bit for
bit."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from trpo_bench.config import ConfigError
from trpo_bench.envs.mujoco_vector import MujocoStepper
from trpo_bench.envs.registry import EnvVector, StepResult
from trpo_bench.envs.restore import restore, snapshot

PAPER_TASKS = ["InvertedPendulum-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5"]
TASKS = [*PAPER_TASKS, "HalfCheetah-v5"]


def assert_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Equal to the last bit (NaN included), same dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes(), (what, a, b)


def assert_same_step(fast: StepResult, slow: StepResult, t: int) -> None:
    for name in ("next_obs", "reward", "terminated", "truncated"):
        assert_bits(getattr(fast, name), getattr(slow, name), f"{name} at step {t}")
    assert fast.final_obs.keys() == slow.final_obs.keys(), t
    for i in fast.final_obs:
        assert_bits(fast.final_obs[i], slow.final_obs[i], f"final_obs[{i}] at step {t}")


def random_actions(vec: EnvVector, rng: np.random.Generator, n: int) -> np.ndarray:
    """float32 actions (as the policy gives them), 1.5x the action range: clipping is exercised."""
    high = vec.action_space.high
    return (rng.uniform(-1.5, 1.5, (n, *high.shape)) * high).astype(np.float32)


@pytest.mark.parametrize("env_id", TASKS)
def test_10000_random_steps_bit_identical_to_gymnasium(env_id: str) -> None:
    """10,000 env steps of random actions, with the vector's automatic resets, on 4 envs."""
    fast = EnvVector(env_id, 4)
    slow = EnvVector(env_id, 4, {"mujoco_vector": False})
    assert fast._mujoco is not None and slow._mujoco is None
    seeds = [11, 12, 13, 14]
    assert_bits(fast.reset(seeds), slow.reset(seeds), "reset")
    rng = np.random.default_rng(0)
    ends = truncations = 0
    for t in range(2500):
        # Now and then a prefix of the envs steps (the last row of an exact step budget).
        n = 3 if t % 97 == 0 else 4
        actions = random_actions(fast, rng, n)
        a, b = fast.step(actions, n), slow.step(actions, n)
        assert_same_step(a, b, t)
        ends += len(a.final_obs)
        truncations += int(a.truncated.sum())
    # The comparison covered episode ends (and, where episodes live long enough, time limits).
    assert ends >= 8
    if env_id in ("Swimmer-v5", "HalfCheetah-v5"):  # never terminate: 1000-step time limits
        assert truncations >= 8
    # The envs' RNGs went through the same draws (resets without a seed continue them).
    for e, g in zip(fast.envs, slow.envs, strict=True):
        assert (
            e.unwrapped.np_random.bit_generator.state == g.unwrapped.np_random.bit_generator.state
        )


@pytest.mark.parametrize("env_id", PAPER_TASKS)
def test_time_limit_truncation_and_termination_bit_identical(env_id: str) -> None:
    """A 25-step time limit: truncations (and terminations that coincide with them) as
    gymnasium's TimeLimit gives them, against gymnasium's own step and reset."""
    mk = [gym.make(env_id, disable_env_checker=True, max_episode_steps=25) for _ in range(6)]
    ref = [gym.make(env_id, disable_env_checker=True, max_episode_steps=25) for _ in range(3)]
    stepper = MujocoStepper(mk[:3])
    for k in range(3):
        assert_bits(mk[k].reset(seed=k)[0], ref[k].reset(seed=k)[0], "reset")
    rng = np.random.default_rng(1)
    low, high = ref[0].action_space.low, ref[0].action_space.high
    obs = np.empty((3, stepper.obs_dim))
    truncs = 0
    for t in range(400):
        actions = np.clip(rng.uniform(-1.2, 1.2, (3, len(low))), low, high)
        reward, term, trunc = stepper.step(actions, range(3), obs)
        for k in range(3):
            o, r, te, tr, _ = ref[k].step(actions[k])
            assert_bits(obs[k], o, f"obs {t}")
            assert_bits(reward[k], np.float64(r), f"reward {t}")
            assert (term[k], trunc[k]) == (te, tr), t
            if te or tr:
                truncs += tr
                assert_bits(stepper.reset_one(k), ref[k].reset()[0], f"reset {t}")
    assert truncs >= 3


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5"])
def test_restore_reproduces_the_future(env_id: str) -> None:
    """A state snapshotted in a vector-stepped env and restored (into another vector's env,
    and into a gymnasium-stepped one) gives the same next 300 steps, bit for bit."""
    trunk = EnvVector(env_id, 2)
    pool = EnvVector(env_id, 3)
    slow = EnvVector(env_id, 1, {"mujoco_vector": False})
    trunk.reset([5, 6])
    rng = np.random.default_rng(2)
    for _ in range(37):
        trunk.step(random_actions(trunk, rng, 2) * 0.3)
    snap = snapshot(trunk.envs[1])
    restore(pool.envs[2], snap)
    restore(slow.envs[0], snap)
    future = random_actions(trunk, rng, 300) * 0.3
    for t, a in enumerate(future):
        one = a[None]
        x = trunk.step_subset(one, np.array([1]))
        y = pool.step_subset(one, np.array([2]))
        z = slow.step_subset(one, np.array([0]))
        for name in ("reward", "terminated", "truncated"):
            assert_bits(getattr(x, name), getattr(y, name), f"{name} {t}")
            assert_bits(getattr(x, name), getattr(z, name), f"{name} {t}")
        assert_bits(trunk.obs[1], pool.obs[2], f"obs {t}")
        assert_bits(trunk.obs[1], slow.obs[0], f"obs {t}")
        if x.terminated[0]:
            break
    assert t > 5  # the comparison ran some steps


def test_chosen_for_supported_tasks_only() -> None:
    assert EnvVector("CartPole-v1", 1)._mujoco is None
    assert EnvVector("Hopper-v5", 1)._mujoco is not None
    with pytest.raises(ConfigError, match=r"mujoco_vector.*allowed: true, false"):
        EnvVector("Hopper-v5", 1, {"mujoco_vector": "yes"})
    with pytest.raises(ValueError, match="supported"):
        MujocoStepper([gym.make("CartPole-v1", disable_env_checker=True)])
