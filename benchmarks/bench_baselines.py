"""Derivative-free baselines' speed on Hopper-v5 (issue 6), one torch thread.

Prints, all measured in this one run:
* candidate evaluation env-steps/s (``CandidateEvaluator``: every env stepped as a vector, all
  candidates' policies in one batched call per step) vs the raw gymnasium step rate of the same
  env with random actions; target ratio >= 0.8;
* the same for whole CEM and CMA-ES training (evaluation + updates + progress rows); full
  CMA-ES's covariance updates in ~750 dimensions cost more than the simulation early on,
  when generations are short (``cma_diagonal`` makes them negligible).

Candidates are drawn around the policy's initialisation (std ``--std``), the population and
horizon from the env's quick budget, as a run would. Rates are given by wall time and by this
process's CPU time (steadier on a shared machine); raw and evaluation measurements alternate.

Usage: python benchmarks/bench_baselines.py [--env Hopper-v5] [--rounds 5] [--std 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import raw_gymnasium_rate

from trpo_bench.methods.search import SearchProblem
from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train
from trpo_bench.sampling.single_path import iteration_seeds

# Whole-training rates: (label, method, extra settings).
TRAINING = (
    ("cem", "cem", {}),
    ("cma-es", "cma-es", {}),
    ("cma-es diagonal", "cma-es", {"cma_diagonal": True}),
)


class Clocks:
    """Wall time and this process's CPU time, summed over measured stretches."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clocks:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def raw_rates(env: str, steps: int, seed: int) -> tuple[float, float]:
    """The raw gymnasium rate by wall time and by CPU time (two short measurements)."""
    wall = raw_gymnasium_rate(env, steps, seed)
    cpu = raw_gymnasium_rate(env, steps, seed, clock=time.process_time)
    return wall, cpu


def training_rate(
    env: str, method: str, iterations: int, steps_per_iter: int, extra: dict
) -> tuple[float, float]:
    """env-steps/s of whole training runs (evaluation, updates, result files), wall and CPU."""
    cfg = build_config(
        env,
        method,
        layers=[
            (
                "bench",
                {
                    "mlflow": False,
                    "checkpoint_every": 0,
                    "iterations": iterations,
                    "steps_per_iter": steps_per_iter,
                    **extra,
                },
            )
        ],
    )
    clocks = Clocks()
    with tempfile.TemporaryDirectory() as tmp, clocks:
        summary = train(cfg, Path(tmp) / "run", log=lambda _m: None)
    return summary["env_steps"] / clocks.wall, summary["env_steps"] / clocks.cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--rounds", type=int, default=5, help="raw / evaluation measurements")
    ap.add_argument("--generations", type=int, default=4, help="generations per round")
    ap.add_argument("--std", type=float, default=0.1)
    ap.add_argument("--raw-steps", type=int, default=3000, help="raw steps per round")
    ap.add_argument("--train-iters", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg = build_config(args.env, "cem", layers=[("bench", {"mlflow": False})])
    problem = SearchProblem(cfg)
    x0 = problem.initial_vector()
    population, episodes = problem.budget.population, problem.budget.episodes
    rng = np.random.default_rng(0)
    clocks, steps, generation = Clocks(), 0, 0
    raw_wall, raw_cpu, ratios_wall, ratios_cpu = [], [], [], []
    # Interleave raw and evaluation measurements, so that both see the same machine load.
    for r in range(args.rounds):
        wall, cpu = raw_rates(args.env, args.raw_steps, seed=r)
        raw_wall.append(wall)
        raw_cpu.append(cpu)
        round_clocks, round_steps = Clocks(), 0
        for _ in range(args.generations):
            vectors = x0 + args.std * rng.standard_normal((population + 1, x0.size))
            seeds, _ = iteration_seeds(0, generation, episodes)
            generation += 1
            with round_clocks:
                round_steps += problem.evaluate(vectors, seeds).env_steps
        ratios_wall.append(round_steps / round_clocks.wall / wall)
        ratios_cpu.append(round_steps / round_clocks.cpu / cpu)
        clocks.wall += round_clocks.wall
        clocks.cpu += round_clocks.cpu
        steps += round_steps
    problem.close()
    raw_w, raw_c = statistics.median(raw_wall), statistics.median(raw_cpu)
    train = {
        label: training_rate(args.env, method, args.train_iters, cfg.steps_per_iter, extra)
        for label, method, extra in TRAINING
    }
    raw_end, _ = raw_rates(args.env, args.raw_steps, seed=99)

    print(
        f"env: {args.env}, {generation} generations of {population} candidates + the mean "
        f"(std {args.std} around the initial policy), {cfg.num_envs} envs, {steps} steps, "
        "1 torch thread"
    )
    print(
        f"raw gymnasium step rate (random actions), median of {args.rounds}: "
        f"{raw_w:,.0f} steps/s wall, {raw_c:,.0f} steps/s CPU"
    )
    print(
        f"candidate evaluation rate:    {steps / clocks.wall:,.0f} steps/s wall, "
        f"{steps / clocks.cpu:,.0f} steps/s CPU"
    )
    print(
        f"RATIO evaluation / raw (median over rounds) = {statistics.median(ratios_wall):.2f} "
        f"wall, {statistics.median(ratios_cpu):.2f} CPU   (target >= 0.8)"
    )
    for label, (rate_wall, rate_cpu) in train.items():
        print(
            f"{label} training ({args.train_iters} iterations x {cfg.steps_per_iter} steps): "
            f"{rate_wall:,.0f} steps/s wall, {rate_cpu:,.0f} CPU; ratio to raw "
            f"{rate_wall / raw_end:.2f} wall (raw {raw_end:,.0f} just after), "
            f"{rate_cpu / raw_c:.2f} CPU"
        )


if __name__ == "__main__":
    main()
