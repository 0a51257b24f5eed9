"""Helpers shared by the benchmark scripts (figures are ratios measured in one run)."""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd

from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train


def raw_gymnasium_rate(
    env_id: str,
    steps: int,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    **make_kwargs: Any,
) -> float:
    """Env steps per second of ``gym.make(env_id, **make_kwargs)`` with random actions, one
    process.

    ``clock=time.process_time`` measures this process's CPU time: steadier than wall time
    on a machine that other jobs share."""
    env = gym.make(env_id, **make_kwargs)
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


def timings(fn: Callable[[], Any], repeats: int, warmup: bool = False) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` (after one untimed call if ``warmup``)."""
    if warmup:
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_train(
    env: str, method: str, over: dict, preset: str = "quick"
) -> tuple[float, pd.DataFrame, dict]:
    """Wall seconds, progress.csv and the config (+ env_steps and cpu_s) of one training run
    at ``preset`` (MLflow and checkpoints off)."""
    cfg = build_config(
        env,
        method,
        layers=[("bench", {"mlflow": False, "checkpoint_every": 0, **over})],
        preset=preset,
    )
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        summary = train(cfg, Path(tmp) / "run", log=lambda _m: None)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        progress = pd.read_csv(Path(tmp) / "run" / "progress.csv")
    return elapsed, progress, cfg.to_dict() | {"env_steps": summary["env_steps"], "cpu_s": cpu}
