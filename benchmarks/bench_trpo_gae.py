"""Modern TRPO preset (trpo-gae) on Hopper-v5: 200,000 env steps, seed 0, then 10
deterministic evaluation episodes (issue 4). Prints the mean evaluation return and the wall
time. Target: >= 3300.

Usage: python benchmarks/bench_trpo_gae.py [--env Hopper-v5] [--steps 200000] [--seed 0]
       [--set key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trpo_bench.config import parse_overrides
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import load_policy
from trpo_bench.run.trainer import evaluate_policy, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = build_config(args.env, "trpo-gae")
    cfg = build_config(
        args.env,
        "trpo-gae",
        layers=[
            (
                "bench",
                {
                    "seed": args.seed,
                    "mlflow": False,
                    "checkpoint_every": 0,
                    "iterations": -(-args.steps // base.steps_per_iter),
                },
            ),
            ("--set", parse_overrides(args.overrides)),
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = train(cfg, Path(tmp) / "run", log=lambda _m: None)
        wall = time.perf_counter() - start
        policy = load_policy(Path(tmp) / "run" / "policy.pt")
    returns = evaluate_policy(policy, args.env, episodes=10, seed=10_000 + args.seed)
    print(
        f"trpo-gae on {args.env}: {summary['env_steps']} env steps, seed {args.seed}, "
        f"{cfg.iterations} iterations x {cfg.steps_per_iter}"
    )
    print(f"training wall time: {wall:.0f} s; last training return {summary['final_return']:.0f}")
    print(
        f"EVAL mean return over 10 deterministic episodes: {np.mean(returns):.0f} "
        f"(std {np.std(returns):.0f})   (target >= 3300)"
    )


if __name__ == "__main__":
    main()
