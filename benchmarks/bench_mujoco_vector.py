"""MuJoCo past gymnasium's per-step overhead (issue 17, point 3), one torch thread.

Prints, measured interleaved in one run (``--rounds`` rounds, CPU seconds of this process):
* raw gymnasium: ``gym.make(env)`` stepped with random actions (the issue's yardstick);
* the suite's ``EnvVector`` stepped with random actions, with the vector MuJoCo stepper
  (``trpo_bench.envs.mujoco_vector``) and with gymnasium's step (option ``mujoco_vector: false``);
* single-path TRPO training (sampling + updates, whole iterations; the evaluation protocol's
  time taken out) with either stepper;
and each rate's ratio to raw gymnasium's in the same round. Target: training with the vector
stepper >= 1.4x raw gymnasium. ``--profile`` adds a cProfile of one training run (top entries).

Usage: python benchmarks/bench_mujoco_vector.py [--env Hopper-v5] [--steps 8000] [--iters 3]
       [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import raw_gymnasium_rate, timed_train

import trpo_bench.run.trainer as trainer
from trpo_bench.envs.registry import ENV_SPECS, EnvVector


def vector_rate(env_id: str, num_envs: int, steps: int, fast: bool) -> float:
    """Env steps per CPU second of ``EnvVector`` with random actions (automatic resets)."""
    envs = EnvVector(env_id, num_envs, {"mujoco_vector": fast})
    envs.reset(list(range(num_envs)))
    rng = np.random.default_rng(0)
    high = envs.action_space.high
    rows = steps // num_envs
    actions = (rng.uniform(-1, 1, (rows, num_envs, *high.shape)) * high).astype(np.float32)
    start = time.process_time()
    for a in actions:
        envs.step(a)
    rate = rows * num_envs / (time.process_time() - start)
    envs.close()
    return rate


def train_rate(env_id: str, over: dict[str, Any], fast: bool) -> float:
    """Training env steps per CPU second of single-path TRPO, with or without the vector
    stepper (the trainer's env options patched for this run only)."""
    original = trainer.env_options
    trainer.env_options = lambda cfg: {**original(cfg), "mujoco_vector": fast}
    try:
        _, progress, run = timed_train(env_id, "trpo-single-path", over)
    finally:
        trainer.env_options = original
    # The evaluation protocol (after the last iteration) is not training: its time comes out
    # (wall seconds of a one-thread loop, about its CPU seconds).
    cpu = run["cpu_s"] - float(progress["eval_protocol_time_s"].sum())
    return run["env_steps"] / cpu


def profile_training(env_id: str, over: dict[str, Any], top: int = 18) -> str:
    """cProfile of one training run with the vector stepper: the top entries by own time."""
    prof = cProfile.Profile()
    prof.enable()
    train_rate(env_id, over, True)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if ENV_SPECS.get(args.env) is None or ENV_SPECS[args.env].family != "mujoco":
        mujoco = [k for k, s in ENV_SPECS.items() if s.family == "mujoco"]
        raise SystemExit(f"--env {args.env!r} is not a MuJoCo task (allowed: {mujoco})")
    torch.set_num_threads(1)
    over = {"steps_per_iter": args.steps, "iterations": args.iters}
    num_envs = int(ENV_SPECS[args.env].defaults.get("num_envs", 16))
    raw_steps = args.steps

    rates: dict[str, list[float]] = {}
    for r in range(args.rounds):
        row = {
            "raw gymnasium": raw_gymnasium_rate(args.env, raw_steps, clock=time.process_time),
            "EnvVector, vector stepper": vector_rate(args.env, num_envs, raw_steps, True),
            "EnvVector, gymnasium step": vector_rate(args.env, num_envs, raw_steps, False),
            "training, vector stepper": train_rate(args.env, over, True),
            "training, gymnasium step": train_rate(args.env, over, False),
        }
        raw = row["raw gymnasium"]
        for name, rate in row.items():
            rates.setdefault(name, []).append(rate)
            rates.setdefault(f"ratio {name}", []).append(rate / raw)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v / raw:.2f}x" for k, v in row.items()))

    print(
        f"\nenv: {args.env}, {num_envs} envs; training {args.iters} x {args.steps} steps, "
        f"single path, 1 torch thread; env steps per CPU second, {args.rounds} interleaved rounds"
    )
    for name in rates:
        if name.startswith("ratio "):
            continue
        vals, ratios = rates[name], rates[f"ratio {name}"]
        print(
            f"  {name:28s} {statistics.median(vals):8,.0f} steps/s "
            f"({min(vals):,.0f}-{max(vals):,.0f})   vs raw: "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    ratio = statistics.median(rates["ratio training, vector stepper"])
    print(f"RATIO training (vector stepper) / raw gymnasium = {ratio:.2f}   (target >= 1.4)")
    if args.profile:
        print("\ncProfile of one training run (vector stepper), top entries by own time:")
        print(profile_training(args.env, over))


if __name__ == "__main__":
    main()
