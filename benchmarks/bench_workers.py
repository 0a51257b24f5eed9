"""Env workers (issue 25): per-iteration wall time with env_workers K = 1 and K > 1, and the
same progress.csv.

For each case (Hopper single path, Pong single path and vine, CMA-ES on Hopper, at the quick
preset's batch shapes), trains a short run with each K, in turns (K = 1, 2, ..., then again in
reverse order, and averages the two: a drifting machine load cancels), and prints the mean wall
time of the steady iterations (all but the first, which starts the workers, and the last,
which holds the final evaluation), the speed-up over K = 1, the env-step rate as a multiple
of one raw emulator's (Atari: ale-py with random actions; MuJoCo: gymnasium's step), and
whether every run's progress.csv (but its time columns) equals K = 1's.

Target on this 2-core machine: K = 2 at least 1.3x faster per iteration than K = 1 for Hopper
and Pong single path. On a many-core GPU machine: ``--ks 1,2,4,8,15 --device cuda``.

Usage: python benchmarks/bench_workers.py [--ks 1,2] [--cases hopper-sp,pong-sp,pong-vine,
       hopper-cma] [--iters 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import raw_gymnasium_rate, timed_train

# (env, method, settings): the quick preset's batch shapes, a few iterations.
CASES = {
    "hopper-sp": ("Hopper-v5", "trpo-single-path", {}),
    "pong-sp": ("Pong-v5", "trpo-single-path", {}),
    "pong-vine": ("Pong-v5", "trpo-vine", {}),
    "hopper-cma": ("Hopper-v5", "cma-es", {"steps_per_iter": 50_000, "population_size": 23}),
}
RAW = {"Hopper-v5": ("Hopper-v5", {}), "Pong-v5": ("ALE/Pong-v5", {"frameskip": 4})}


def steady_iteration_s(progress: pd.DataFrame) -> float:
    """Mean wall seconds of iterations 1 .. n-2 (not the first, not the last)."""
    walls = progress["wall_time_s"].diff().iloc[1:-1]
    return float(walls.mean())


def numbers(progress: pd.DataFrame) -> pd.DataFrame:
    return progress.drop(columns=[c for c in progress.columns if c.endswith("_time_s")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ks", default="1,2", help="env_workers values, 1 first")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if ks[0] != 1:
        raise SystemExit(f"--ks must start with 1 (the in-process baseline), got {args.ks}")
    torch.set_num_threads(1)
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    print(f"env workers: K = {ks}, {args.iters} iterations a run, device {args.device}")
    for name in args.cases.split(","):
        env, method, settings = CASES[name]
        over = {"iterations": args.iters, "eval_every": 0, "eval_episodes": 1, **settings}
        over["device"] = args.device
        times: dict[int, list[float]] = {k: [] for k in ks}
        first: dict[int, pd.DataFrame] = {}
        steps = 0
        for order in (ks, ks[::-1]):
            for k in order:
                _, progress, cfg = timed_train(env, method, {**over, "env_workers": k})
                times[k].append(steady_iteration_s(progress))
                first.setdefault(k, numbers(progress))
                steps = int(cfg["steps_per_iter"])
        raw_id, kwargs = RAW[env]
        raw = raw_gymnasium_rate(raw_id, 3000, clock=time.perf_counter, **kwargs)
        base = sum(times[1]) / len(times[1])
        print(
            f"{name} ({env} {method}, {steps} env steps an iteration, num_envs "
            f"{cfg['num_envs']}; one raw emulator {raw:,.0f} steps/s):"
        )
        for k in ks:
            mean = sum(times[k]) / len(times[k])
            same = first[k].equals(first[1])
            runs = ", ".join(f"{t:.2f}" for t in times[k])
            print(
                f"  K={k:<2} {mean:7.2f} s an iteration (runs {runs})"
                f"  speed-up {base / mean:4.2f}x  {steps / mean / raw:4.2f}x one raw emulator"
                f"  progress.csv {'identical' if same else 'DIFFERENT'}"
            )


if __name__ == "__main__":
    main()
