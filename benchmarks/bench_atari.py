"""Single-path TRPO on Pong from pixels (issue 7), one torch thread.

Prints, measured in one run: the training env-steps/s (sampling + updates) against the raw ALE
step rate of the same game with the same emulator settings (grayscale screen, frame skip 4,
no sticky actions) and random actions; their ratio (target >= 0.7); and the peak RSS.

Usage: python benchmarks/bench_atari.py [--env Pong-v5] [--steps 8000] [--iters 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, raw_gymnasium_rate, timed_train

from trpo_bench.atari import register
from trpo_bench.config import build_config
from trpo_bench.envs import ENV_SPECS


def raw_ale_rate(gym_id: str, steps: int) -> float:
    """The same emulator settings as training: grayscale, frame skip 4, no sticky actions."""
    register()
    return raw_gymnasium_rate(
        gym_id, steps, obs_type="grayscale", frameskip=4, repeat_action_probability=0.0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Pong-v5")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gym_id = ENV_SPECS[args.env].gym_id
    raw_before = raw_ale_rate(gym_id, args.steps // 4)
    over = {"steps_per_iter": args.steps, "iterations": args.iters}
    elapsed, progress, run = timed_train(args.env, "trpo-single-path", over)
    cfg = build_config(args.env, "trpo-single-path", layers=[("bench", over)])
    summary = {"env_steps": run["env_steps"]}
    sample_s, update_s = progress["sample_time_s"].sum(), progress["update_time_s"].sum()
    raw_after = raw_ale_rate(gym_id, args.steps // 4)
    raw = (raw_before + raw_after) / 2
    rate = summary["env_steps"] / elapsed
    print(
        f"{args.env}: {args.iters} iterations x {args.steps} steps, {cfg.num_envs} envs, "
        f"frame stack {cfg.atari_frame_stack}, 1 torch thread"
    )
    print(
        f"raw ALE step rate (random actions): {raw:,.0f} steps/s "
        f"(before {raw_before:,.0f}, after {raw_after:,.0f})"
    )
    print(f"TRPO single path training rate:     {rate:,.0f} steps/s (incl. updates)")
    print(f"RATIO training / raw = {rate / raw:.2f}   (target >= 0.7)")
    print(
        f"  of which sampling {sample_s:.1f} s ({summary['env_steps'] / sample_s:,.0f} "
        f"steps/s, RATIO sampling / raw = {summary['env_steps'] / sample_s / raw:.2f}) and "
        f"updates {update_s:.1f} s ({update_s / len(progress):.1f} s per iteration)"
    )
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
