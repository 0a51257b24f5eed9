"""TRPO vine speed on Hopper-v5 (issue 5), one torch thread.

Prints, all measured in this one run:
* Q-values per second of vine training (branch length 100, K = 4; sampling + update), and per
  second of sampling alone;
* vine training env-steps/s (trunks and branches, sampling + updates) vs TRPO single path's on
  the same env and budget (``trainer.train``, MLflow off; single path runs before and after
  vine and the two are averaged), over whole runs (vine's includes building its branch pool)
  and after iteration 0, in wall time and per CPU second of this process (less disturbed by
  other jobs on a shared machine); target ratio >= 0.8.

Usage: python benchmarks/bench_vine.py [--env Hopper-v5] [--steps 25000] [--iters 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, timed_train


def steady_rate(progress: pd.DataFrame) -> float:
    """env-steps/s over iterations 1.. (without iteration 0's one-time set-up)."""
    steps = progress["env_steps"].iloc[-1] - progress["env_steps"].iloc[0]
    return steps / (progress["wall_time_s"].iloc[-1] - progress["wall_time_s"].iloc[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--steps", type=int, default=25_000)
    ap.add_argument("--iters", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    budget = {"steps_per_iter": args.steps, "iterations": args.iters}

    # Single path before and after vine: the average cancels a drifting machine load.
    sp_runs = [timed_train(args.env, "trpo-single-path", budget)]
    vine_over = {**budget, "vine_branch_length": 100, "vine_branches_per_state": 4}
    vine_time, progress, vine = timed_train(args.env, "trpo-vine", vine_over)
    sp_runs.append(timed_train(args.env, "trpo-single-path", budget))
    sp = sp_runs[0][2]
    sp_rates = [cfg["env_steps"] / t for t, _, cfg in sp_runs]
    sp_rate = sum(sp_rates) / 2
    sp_steady = sum(steady_rate(p) for _, p, _ in sp_runs) / 2
    vine_rate, vine_steady = vine["env_steps"] / vine_time, steady_rate(progress)
    # Per CPU second of this process: what other jobs on a shared machine disturb least.
    sp_cpu_rate = sum(cfg["env_steps"] / cfg["cpu_s"] for _, _, cfg in sp_runs) / 2
    vine_cpu_rate = vine["env_steps"] / vine["cpu_s"]
    q_values = progress["vine_q_values"].sum()
    sample_time = progress["sample_time_s"].sum()

    print(
        f"env: {args.env}, {args.iters} iterations x {args.steps} steps, 1 torch thread, "
        f"policy hidden {vine['hidden_sizes']}"
    )
    print(
        f"single path: {sp['num_envs']} envs, {sp['env_steps']} steps per run -> "
        f"{sp_rate:,.0f} steps/s (runs: {sp_rates[0]:,.0f} before, {sp_rates[1]:,.0f} after "
        f"vine); after iteration 0: {sp_steady:,.0f} steps/s"
    )
    print(
        f"vine: {vine['num_envs']} trunks, H = {vine['vine_branch_length']}, "
        f"K = {vine['vine_branches_per_state']}, branch pool <= {vine['vine_batch_branches']} "
        f"envs; {vine['env_steps']} steps ({progress['vine_branch_steps'].sum():.0f} in branches, "
        f"mean branch {progress['vine_branch_steps'].sum() / q_values:.1f} steps) in "
        f"{vine_time:.1f}s -> {vine_rate:,.0f} steps/s; after iteration 0 (pool built): "
        f"{vine_steady:,.0f} steps/s"
    )
    print(
        f"vine Q-values: {q_values:.0f} ({q_values / args.iters:.0f} per iteration) -> "
        f"{q_values / vine_time:,.0f} Q-values/s of training, "
        f"{q_values / sample_time:,.0f} per second of sampling"
    )
    print(
        f"per CPU second: single path {sp_cpu_rate:,.0f} steps/s, vine {vine_cpu_rate:,.0f} steps/s"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    print(
        f"RATIO vine / single path env-steps/s = {vine_rate / sp_rate:.2f} whole runs, "
        f"{vine_steady / sp_steady:.2f} after iteration 0, {vine_cpu_rate / sp_cpu_rate:.2f} "
        "per CPU second   (target >= 0.8)"
    )


if __name__ == "__main__":
    main()
