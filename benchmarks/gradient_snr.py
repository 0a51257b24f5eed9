"""How much signal a batch's policy gradient holds: the cosine between the surrogate's
gradients (eq. 14) from independent batches of the same policy, and between each and their
mean. Near 1, one batch already points where more data would; near 0, the batch's gradient is
mostly noise, and a KL-bounded step along it (TRPO's) moves the policy without improving it.

    python benchmarks/gradient_snr.py --env Pong-v5 --set steps_per_iter=20000 --batches 3
    python benchmarks/gradient_snr.py --env InvertedPendulum-v5 --batches 3   # a task that learns

Written for issue 22's Pong question (single path at 2M env steps does not learn): prints the
pairwise cosines of `--batches` batches drawn with different random streams at the initial
policy of `--seed`, with the config `trpo-bench train` would use (`--preset`, `--set`).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from trpo_bench.config import parse_overrides
from trpo_bench.methods.registry import METHODS
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Pong-v5")
    parser.add_argument("--method", default="trpo-single-path")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layers = [("--set", parse_overrides(args.set))] if args.set else []
    cfg = build_config(args.env, args.method, layers=layers, preset=args.preset)
    cfg = type(cfg)(**{**cfg.__dict__, "seed": args.seed, "mlflow": False})
    learner = build_learner(cfg)
    method = METHODS[cfg.method]
    params = [p for p in learner.policy.parameters() if p.requires_grad]
    grads = []
    start = time.process_time()
    for b in range(args.batches):
        generator = iteration_generator(cfg.seed, 1000 + b)  # streams no training run draws
        sample = method.sampler(learner.envs, learner.policy, cfg, 1000 + b, None, generator)
        _, g = sample.objective.surrogate_and_grad(learner.policy, params)
        grads.append(g.detach())
    learner.envs.close()
    cos = torch.nn.functional.cosine_similarity
    pairs = [float(cos(a, b, dim=0)) for a, b in itertools.combinations(grads, 2)]
    mean = torch.stack(grads).mean(0)
    to_mean = [float(cos(g, mean, dim=0)) for g in grads]
    print(
        f"{cfg.env} {cfg.method}: {args.batches} batches of {cfg.steps_per_iter} steps "
        f"(normalize_advantages={cfg.normalize_advantages}), {time.process_time() - start:.0f} "
        "CPU s"
    )
    print("cosine between batches' gradients: " + ", ".join(f"{c:.3f}" for c in pairs))
    print("cosine of each with their mean:    " + ", ".join(f"{c:.3f}" for c in to_mean))


if __name__ == "__main__":
    main()
