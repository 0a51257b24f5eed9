"""Single-path TRPO on Pong from pixels (issue 7), one torch thread.

Prints, measured in one run: the training env-steps/s (sampling + updates) against the raw ALE
step rate of the same game with the same emulator settings (grayscale screen, frame skip 4,
no sticky actions) and random actions; their ratio (target >= 0.7); and the peak RSS.

It also prints the ceiling of that ratio for any single-path TRPO with the paper's network on
this CPU thread: every frame costs at least one emulator step, one forward pass to pick the
action (at the sampling batch of ``num_envs`` frames) and one forward + backward pass for the
policy gradient (in chunks of ``batch_chunk``), with no Fisher products, line search, frame
pooling or Python at all. Those three costs are timed here on real frames.

Usage: python benchmarks/bench_atari.py [--env Pong-v5] [--steps 8000] [--iters 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, raw_gymnasium_rate, timed_train, timings

from trpo_bench.atari import register
from trpo_bench.config import TrainConfig, build_config
from trpo_bench.envs import ENV_SPECS, EnvVector, env_options
from trpo_bench.policies import make_policy
from trpo_bench.sampling import SinglePathObjective


def raw_ale_rate(gym_id: str, steps: int) -> float:
    """The same emulator settings as training: grayscale, frame skip 4, no sticky actions."""
    register()
    return raw_gymnasium_rate(
        gym_id, steps, obs_type="grayscale", frameskip=4, repeat_action_probability=0.0
    )


def learner_costs(cfg: TrainConfig, frames: int = 4096, repeats: int = 3) -> tuple[float, float]:
    """Seconds per frame of (the action forward pass at a batch of ``num_envs`` frames, the
    policy gradient's forward + backward in ``batch_chunk`` chunks), on frames of the game."""
    envs = EnvVector(cfg.env, cfg.num_envs, env_options(cfg))
    policy = make_policy(envs.observation_space, envs.action_space, cfg.hidden_sizes)
    rng = np.random.default_rng(0)
    obs = [envs.reset(list(range(cfg.num_envs))).copy()]
    while len(obs) * cfg.num_envs < frames:
        obs.append(envs.step(rng.integers(envs.action_space.n, size=cfg.num_envs)).next_obs.copy())
    envs.close()
    batch = torch.from_numpy(np.concatenate(obs)[:frames])

    def best_of(fn) -> float:  # the least noisy of a few timings
        return min(timings(fn, repeats, warmup=True)) / frames

    def act() -> None:
        with torch.no_grad():
            for i in range(0, frames, cfg.num_envs):
                policy.sample(policy.dist_params(batch[i : i + cfg.num_envs]))

    actions = torch.from_numpy(rng.integers(envs.action_space.n, size=frames))
    objective = SinglePathObjective(policy, batch, actions, torch.randn(frames), cfg.batch_chunk)
    params = policy.policy_parameters()
    return best_of(act), best_of(lambda: objective.surrogate_and_grad(policy, params))


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
    act_s, grad_s = learner_costs(cfg)
    env_s = 1 / raw
    print(
        f"per frame: emulator {env_s * 1e6:.0f} us, action forward pass {act_s * 1e6:.0f} us "
        f"(batch {cfg.num_envs}), gradient forward + backward {grad_s * 1e6:.0f} us "
        f"(chunks of {cfg.batch_chunk})"
    )
    print(
        f"CEILING training / raw = {env_s / (env_s + act_s + grad_s):.2f}   (emulator + those "
        "two passes only: no Fisher products, line search, pooling or Python)"
    )
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
