"""PPO's speed beside trpo-gae's on Hopper-v5 (issue 16): env steps per CPU second of training,
one torch thread, the two methods interleaved round by round in one process so that both see
the same machine load. Target: ppo >= 0.8x trpo-gae.

Each round trains each method for ``--iterations`` iterations of its preset's 2048-step batch
from the same seed (evaluation at the end only, no MLflow, no checkpoints), after one untimed
iteration of each (warm-up); a method's rate is its total env steps over its total CPU seconds
(``time.process_time``). The verdict is on the ratio of these totals; each round's ratio is
printed too (on a machine that other jobs share, one round can be off by 0.1 either way). The
1M-step Hopper return (config/modern.yaml) is not run here.

Usage: python benchmarks/bench_ppo.py [--env Hopper-v5] [--iterations 10] [--rounds 3]
"""

from __future__ import annotations

import argparse

import torch
from common import timed_train

METHODS = ("trpo-gae", "ppo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = dict.fromkeys(METHODS, 0)
    cpu = dict.fromkeys(METHODS, 0.0)
    update = dict.fromkeys(METHODS, 0.0)
    for method in METHODS:  # untimed: the process's one-time costs (lazy imports, first calls,
        # about 1 CPU s) would otherwise fall on round 0's first method, trpo-gae
        timed_train(args.env, method, {"iterations": 1, "eval_every": 0, "eval_episodes": 1})
    per_round = []  # each round's ratio: the spread a shared machine's load puts on the total's
    for r in range(args.rounds):
        order = METHODS if r % 2 == 0 else METHODS[::-1]  # alternate who goes first
        round_rate = {}
        for method in order:
            over = {"iterations": args.iterations, "eval_every": 0, "eval_episodes": 1, "seed": r}
            _, progress, info = timed_train(args.env, method, over)
            steps[method] += info["env_steps"]
            cpu[method] += info["cpu_s"]
            update[method] += float(progress["update_time_s"].sum())
            round_rate[method] = info["env_steps"] / info["cpu_s"]
        per_round.append(round_rate["ppo"] / round_rate["trpo-gae"])
    rate = {m: steps[m] / cpu[m] for m in METHODS}
    for m in METHODS:
        print(
            f"{m:9s} on {args.env}: {steps[m]} env steps in {cpu[m]:.1f} CPU s -> "
            f"{rate[m]:,.0f} env steps per CPU second (update steps {update[m]:.1f} s wall)"
        )
    ratio = rate["ppo"] / rate["trpo-gae"]
    verdict = "meets" if ratio >= 0.8 else "misses"
    print(f"ppo / trpo-gae env steps per CPU second: {ratio:.2f}x ({verdict} the 0.8x target)")
    print("per round (seed 0, 1, ...): " + ", ".join(f"{x:.2f}x" for x in per_round))


if __name__ == "__main__":
    main()
