"""Cost of the empirical Fisher's products against the analytic one, same batch (issue 4).

Hopper-v5, one 25,000-step single-path batch, the paper's 10% subsample, one torch thread.
Prints the time of CG's work for each Fisher (building the product once + 10 products) and
their ratio; target: empirical <= 2 x analytic.

Usage: python benchmarks/bench_fisher.py [--env Hopper-v5] [--steps 25000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timings

from trpo_bench.core.optim import empirical_fisher_vector_product, fisher_vector_product
from trpo_bench.methods.steps import fvp_subsample_index
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator
from trpo_bench.sampling.single_path import sample_single_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--steps", type=int, default=25_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = build_config(args.env, "empirical-fim", layers=[("b", {"steps_per_iter": args.steps})])
    learner = build_learner(cfg)
    gen = iteration_generator(0, 0)
    objective = sample_single_path(learner.envs, learner.policy, cfg, 0, None, gen).objective
    policy, params = learner.policy, learner.policy.policy_parameters()
    index = fvp_subsample_index(objective.kl_obs.shape[0], cfg.fvp_subsample, gen)
    obs, actions = objective.kl_obs[index], objective.actions[index]
    v = torch.randn(sum(p.numel() for p in params), generator=gen)

    def analytic() -> None:
        fvp = fisher_vector_product(lambda: objective.kl(policy, index).mean(), params, 0.1)
        for _ in range(cfg.cg_iters):
            fvp(v)

    def empirical() -> None:
        fvp = empirical_fisher_vector_product(policy, policy.log_prob, obs, actions, 0.1)
        for _ in range(cfg.cg_iters):
            fvp(v)

    a, e = (statistics.median(timings(fn, 7)) for fn in (analytic, empirical))
    print(
        f"{args.env}: {len(obs)} states in the products, {v.numel()} parameters, "
        f"{cfg.cg_iters} products"
    )
    print(
        f"analytic (KL Hessian, double backprop): {a * 1e3:.1f} ms; "
        f"empirical (vmap per-sample scores): {e * 1e3:.1f} ms"
    )
    print(f"RATIO empirical / analytic = {e / a:.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
