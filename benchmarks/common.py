"""Helpers shared by the benchmark scripts (figures are ratios measured in one run)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import gymnasium as gym


def raw_gymnasium_rate(
    env_id: str, steps: int, seed: int = 0, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Env steps per second of ``gym.make(env_id)`` with random actions, one process.

    ``clock=time.process_time`` measures this process's CPU time: steadier than wall time
    on a machine that other jobs share."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start = clock()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    rate = steps / (clock() - start)
    env.close()
    return rate


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
