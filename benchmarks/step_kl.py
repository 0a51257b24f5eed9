"""How far TRPO's full step moves the policy, against the trust region delta, by CG damping.

TRPO's first line-search trial is ``beta s`` with ``beta = sqrt(2 delta / s'(A + lambda I)s)``
(sec. 6, app. C; ``lambda`` is ``cg_damping``): its quadratic model of the KL is delta only
when ``lambda ||s||^2`` is small beside ``s'As``. Where the Fisher's curvature along ``s`` is
small (pixels), the damping takes a share of the model's KL and the step lands below delta.
The long grid's Pong runs (``docs/reproduction/long.md``) take their full step in most
iterations at a mean KL of about 0.006 with delta 0.01.

For each damping, trains a few iterations of the long grid's run of ``--env`` and ``--method``
(config/long.yaml's settings, the same seed: the first iteration's batch is the same for every
damping) and prints the share of iterations that took the full step (step fraction 1), their
mean KL and that as a share of delta, and the mean update seconds.

Usage: python benchmarks/step_kl.py [--env Pong-v5] [--method trpo-single-path]
       [--dampings 0.1,0.01] [--iters 4] [--grid config/long.yaml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed_train

from trpo_bench.analysis.status import load_grid_config
from trpo_bench.grid import run_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Pong-v5")
    ap.add_argument("--method", default="trpo-single-path")
    ap.add_argument("--dampings", default="0.1,0.01")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--grid", default="config/long.yaml")
    args = ap.parse_args()
    dampings = [float(d) for d in args.dampings.split(",")]
    grid = load_grid_config([args.grid])
    settings = run_settings(grid, args.env, args.method)
    print(f"{args.env} {args.method}, {args.grid}'s settings, {args.iters} iterations each")
    print("cg_damping  full steps  KL of full steps  / delta  update s")
    for damping in dampings:
        over = {**settings, "iterations": args.iters, "eval_every": 0, "cg_damping": damping}
        _, progress, cfg = timed_train(args.env, args.method, over, preset=grid["preset"])
        full = progress[progress["step_fraction"] == 1.0]
        kl = float(full["kl_mean"].mean()) if len(full) else float("nan")
        print(
            f"{damping:10g}  {len(full):4d} of {len(progress):<3d} {kl:16.4f}  "
            f"{kl / cfg['delta']:7.2f}  {progress['update_time_s'].mean():8.2f}"
        )


if __name__ == "__main__":
    main()
