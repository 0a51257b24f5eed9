"""TRPO single path speed on Hopper-v5 (issue 2), one torch thread.

Prints, all measured in this one run:
* training env-steps/s (sampling + update, whole iterations) vs the raw gymnasium step rate of
  the same env with random actions; target ratio >= 0.8;
* the update's time divided by one full-batch policy-gradient time; target <= 3.

Usage: python benchmarks/bench_single_path.py [--env Hopper-v5] [--steps 25000] [--iters 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import raw_gymnasium_rate, timed_train

from trpo_bench.core.optim import flat_grad
from trpo_bench.methods.steps import trpo_step
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator
from trpo_bench.sampling.single_path import sample_single_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--steps", type=int, default=25_000)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)

    raw_before = raw_gymnasium_rate(args.env, args.steps // 2)
    over = {"steps_per_iter": args.steps, "iterations": args.iters}
    train_time, progress, run = timed_train(args.env, "trpo-single-path", over)
    # The evaluation protocol's episodes (after the last iteration) are not training samples:
    # their time is taken out of the training rate and shown apart.
    eval_time = float(progress["eval_protocol_time_s"].sum())
    train_time -= eval_time
    cfg = build_config(args.env, "trpo-single-path", layers=[("bench", over)])
    summary = {"env_steps": run["env_steps"]}
    raw_after = raw_gymnasium_rate(args.env, args.steps // 2)
    raw = (raw_before + raw_after) / 2
    train_rate = summary["env_steps"] / train_time

    # Update time vs one full-batch policy gradient, on the same batch.
    learner = build_learner(cfg)
    gen = iteration_generator(cfg.seed, 0)
    sample = sample_single_path(learner.envs, learner.policy, cfg, 0, None, gen)
    params = learner.policy.policy_parameters()
    snapshot = [p.detach().clone() for p in params]

    def restore() -> None:
        with torch.no_grad():
            for p, s in zip(params, snapshot, strict=True):
                p.copy_(s)

    pg_times, step_times = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        flat_grad(sample.objective.surrogate(learner.policy), params)
        pg_times.append(time.perf_counter() - t0)
        restore()
        t0 = time.perf_counter()
        trpo_step(learner.policy, sample.objective, cfg, torch.Generator().manual_seed(0))
        step_times.append(time.perf_counter() - t0)
        restore()
    pg, step = statistics.median(pg_times), statistics.median(step_times)

    print(
        f"env: {args.env}, {args.iters} iterations x {args.steps} steps, "
        f"{cfg.num_envs} envs, policy hidden {cfg.hidden_sizes}, 1 torch thread"
    )
    print(
        f"raw gymnasium step rate (random actions): {raw:,.0f} steps/s "
        f"(before {raw_before:,.0f}, after {raw_after:,.0f})"
    )
    print(
        f"TRPO single path training rate:          {train_rate:,.0f} steps/s "
        f"(incl. updates, {train_time:.1f}s)"
    )
    print(
        f"evaluation protocol (not in env_steps): {eval_time:.1f}s for "
        f"{int(progress['eval_env_steps'].sum()):,} steps"
    )
    print(f"RATIO training / raw = {train_rate / raw:.2f}   (target >= 0.8)")
    print(f"full-batch policy gradient: {pg * 1e3:.1f} ms; TRPO update: {step * 1e3:.1f} ms")
    print(f"RATIO update / policy gradient = {step / pg:.2f}   (target <= 3)")


if __name__ == "__main__":
    main()
