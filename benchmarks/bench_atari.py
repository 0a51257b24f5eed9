"""TRPO on Atari from pixels against the raw emulator, per CPU second on one torch thread
(issues 7 and 17).

Prints, measured in one run with the raw rate interleaved between the training runs: the raw
ALE step rate of the game with the training's emulator settings (grayscale screen, frame skip
4, no sticky actions) and random actions; single path's and vine's training rates; their
ratios to raw (issue 17's target for single path: >= 0.5); each iteration's cost split into
sampling and update; and the peak RSS.

Every figure is CPU time of this process (``time.process_time``: user + system, so page
faults count), steadier than wall time on a shared machine. A training rate is env steps over
the iterations' CPU time (sampling + update, which is what a 500-iteration job pays per
frame). The job's fixed costs are printed apart: building the envs (each loads its ROM) and
the evaluation protocol after the last iteration; at the paper grid's ``eval_every`` the
evaluation adds the printed share.

It also prints the ceiling of the single-path ratio for any single-path TRPO with the paper's
network on this CPU thread: every frame costs at least one emulator step, one forward pass
to pick the action (at the sampling batch of ``num_envs`` frames) and one forward + backward
pass for the policy gradient (in chunks of ``batch_chunk``), with no Fisher products, line
search, frame pooling or Python at all. Those three costs are timed here on real frames.

The runs use the ``paper`` preset (Table 3: 16 envs, chunks of 512) with ``--steps`` frames
per iteration (the paper's 100K single path and 400K vine take minutes per iteration; the
Fisher products run on 10% of whatever the batch is).

With ``--device cuda`` the policy, value net and update run on the GPU (the ``device`` config
key) while the emulator stays on this CPU thread. GPU work is not CPU time of this process, so
then the training runs and the raw emulator are both timed on the wall clock (one thread:
the raw rate per wall second is its rate per CPU second on an idle core), and the ratio is
what one core with a GPU beside it delivers. The ceiling below is always the CPU's.

Usage: python benchmarks/bench_atari.py [--env Pong-v5] [--steps 20000] [--iters 3]
       [--rounds 1] [--preset paper|quick] [--methods trpo-single-path trpo-vine]
       [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, raw_gymnasium_rate

import trpo_bench.run.trainer
from trpo_bench.config import TrainConfig
from trpo_bench.core.policies import make_policy
from trpo_bench.envs.atari import register
from trpo_bench.envs.registry import ENV_SPECS, EnvVector, env_options
from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train
from trpo_bench.sampling.single_path import SinglePathObjective

# The clock each device is timed by, and its name: GPU work is not CPU time of this process.
CLOCKS: dict[str, tuple[Callable[[], float], str]] = {
    "cpu": (time.process_time, "CPU"),
    "cuda": (time.perf_counter, "wall"),
}


def raw_ale_rate(gym_id: str, steps: int, clock: Callable[[], float] = time.process_time) -> float:
    """Steps per second of ``clock`` (default: CPU seconds) with the training's emulator
    settings: grayscale, frame skip 4, no sticky actions, random actions."""
    register()
    return raw_gymnasium_rate(
        gym_id,
        steps,
        clock=clock,
        obs_type="grayscale",
        frameskip=4,
        repeat_action_probability=0.0,
    )


@contextlib.contextmanager
def clock_in_trainer(clock: Callable[[], float]) -> Iterator[None]:
    """The training loop's timings (progress.csv's ``sample_time_s``, ``update_time_s``,
    ``wall_time_s``) read ``clock`` (this process's CPU clock, or the wall clock itself)."""
    module = trpo_bench.run.trainer
    if not hasattr(module.time, "perf_counter"):
        raise RuntimeError("trpo_bench.run.trainer no longer times with time.perf_counter")
    real = module.time
    module.time = types.SimpleNamespace(perf_counter=clock)
    try:
        yield
    finally:
        module.time = real


def cpu_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The least CPU time of ``repeats`` calls of ``fn``, after one untimed call."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        runs.append(time.process_time() - start)
    return min(runs)


def timed_train(
    env: str, method: str, preset: str, over: dict, clock: Callable[[], float]
) -> tuple[pd.DataFrame, dict]:
    """progress.csv (timed by ``clock``) and the seconds of ``clock`` and env steps of one
    training run (MLflow and checkpoints off)."""
    layer = {"mlflow": False, "checkpoint_every": 0, **over}
    cfg = build_config(env, method, layers=[("bench", layer)], preset=preset)
    with tempfile.TemporaryDirectory() as tmp, clock_in_trainer(clock):
        start = clock()
        summary = train(cfg, Path(tmp) / "run", log=lambda _m: None)
        seconds = clock() - start
        progress = pd.read_csv(Path(tmp) / "run" / "progress.csv")
    return progress, {"env_steps": summary["env_steps"], "seconds": seconds}


def learner_costs(cfg: TrainConfig, frames: int = 4096, repeats: int = 3) -> tuple[float, float]:
    """CPU seconds per frame of (the action forward pass at a batch of ``num_envs`` frames,
    the policy gradient's forward + backward in ``batch_chunk`` chunks), on frames of the
    game."""
    envs = EnvVector(cfg.env, cfg.num_envs, env_options(cfg))
    policy = make_policy(envs.observation_space, envs.action_space, cfg.hidden_sizes)
    rng = np.random.default_rng(0)
    obs = [envs.reset(list(range(cfg.num_envs))).copy()]
    while len(obs) * cfg.num_envs < frames:
        obs.append(envs.step(rng.integers(envs.action_space.n, size=cfg.num_envs)).next_obs.copy())
    envs.close()
    batch = torch.from_numpy(np.concatenate(obs)[:frames])

    def best_of(fn: Callable[[], Any]) -> float:  # the least noisy of a few timings
        return cpu_seconds(fn, repeats) / frames

    def act() -> None:
        with torch.no_grad():
            for i in range(0, frames, cfg.num_envs):
                policy.sample(policy.dist_params(batch[i : i + cfg.num_envs]))

    actions = torch.from_numpy(rng.integers(envs.action_space.n, size=frames))
    objective = SinglePathObjective(policy, batch, actions, torch.randn(frames), cfg.batch_chunk)
    params = policy.policy_parameters()
    return best_of(act), best_of(lambda: objective.surrogate_and_grad(policy, params))


def train_rate(
    env: str, method: str, preset: str, steps: int, iters: int, device: str = "cpu"
) -> dict[str, float]:
    """One training run's figures in seconds of the device's clock (:data:`CLOCKS`): env steps
    per second of its steady iterations (all but the first, whose seeded resets load each
    env's ROM once), their sampling and update seconds, and the fixed costs (setup, the first
    iteration's extra, the evaluation)."""
    if iters < 2:
        raise ValueError(f"--iters {iters}: need at least 2 (the first is not steady)")
    over = {"steps_per_iter": steps, "iterations": iters, "eval_every": 0, "device": device}
    progress, run = timed_train(env, method, preset, over, CLOCKS[device][0])
    body = progress["wall_time_s"].diff().fillna(progress["wall_time_s"].iloc[0])
    work = progress["sample_time_s"] + progress["update_time_s"]
    frames = progress["env_steps"].diff().fillna(progress["env_steps"].iloc[0])
    steady = slice(1, None)
    # The evaluation (eval_every 0) runs after the last iteration, inside its body.
    eval_s = float(body.iloc[-1] - work.iloc[-1])
    other = (body - work).iloc[1:-1]
    return {
        "rate": float(frames.iloc[steady].sum() / work.iloc[steady].sum()),
        "sample_s": float(progress["sample_time_s"].iloc[steady].mean()),
        "update_s": float(progress["update_time_s"].iloc[steady].mean()),
        "other_s": float(other.mean()) if len(other) else float("nan"),
        "first_extra_s": float(work.iloc[0] - work.iloc[steady].mean()),
        "eval_s": eval_s,
        "setup_s": run["seconds"] - float(progress["wall_time_s"].iloc[-1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Pong-v5")
    ap.add_argument("--steps", type=int, default=20000, help="frames per iteration")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repetitions")
    ap.add_argument("--preset", default="paper", choices=["paper", "quick"])
    ap.add_argument("--methods", nargs="+", default=["trpo-single-path", "trpo-vine"])
    ap.add_argument("--raw-steps", type=int, default=3000)
    ap.add_argument(
        "--device",
        default="cpu",
        choices=sorted(CLOCKS),
        help="where the update runs (cuda: everything is timed on the wall clock)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    clock, unit = CLOCKS[args.device]
    gym_id = ENV_SPECS[args.env].gym_id
    cfg = build_config(args.env, "trpo-single-path", layers=[], preset=args.preset)
    print(
        f"{args.env}, preset {args.preset}: {args.iters} iterations x {args.steps} frames, "
        f"{cfg.num_envs} envs, chunks of {cfg.batch_chunk}, frame stack "
        f"{cfg.atari_frame_stack}, 1 torch thread, device {args.device}; "
        + ("CPU seconds of this process" if unit == "CPU" else "wall seconds")
    )
    ratios: dict[str, list[float]] = {m: [] for m in args.methods}
    for r in range(args.rounds):
        raws = [raw_ale_rate(gym_id, args.raw_steps, clock)]
        results = {}
        for method in args.methods:
            results[method] = train_rate(
                args.env, method, args.preset, args.steps, args.iters, args.device
            )
            raws.append(raw_ale_rate(gym_id, args.raw_steps, clock))
        raw = float(np.mean(raws))
        print(
            f"round {r + 1}: raw ALE {raw:,.0f} steps per {unit} s (random actions; "
            f"{', '.join(f'{x:,.0f}' for x in raws)} between the runs)"
        )
        for method, res in results.items():
            ratio = res["rate"] / raw
            ratios[method].append(ratio)
            per_frame = 1e6 / args.steps
            print(
                f"  {method}: {res['rate']:,.0f} steps per {unit} s, RATIO training / raw = "
                f"{ratio:.2f}; per iteration: sample {res['sample_s']:.2f} s "
                f"({res['sample_s'] * per_frame:.0f} us/frame), update {res['update_s']:.2f} s "
                f"({res['update_s'] * per_frame:.0f} us/frame), other {res['other_s']:.3f} s"
            )
            print(
                f"    fixed: setup {res['setup_s']:.1f} s, the first iteration's ROM loads "
                f"{res['first_extra_s']:.1f} s, the evaluation after the last iteration "
                f"{res['eval_s']:.1f} s ({cfg.eval_episodes} episodes x 2: at eval_every 5 "
                f"and 100K frames per iteration, "
                f"{res['eval_s'] / (5 * 1e5 / res['rate']):.1%} of the training time)"
            )
    for method, values in ratios.items():
        print(
            f"RATIO {method} / raw over {args.rounds} round(s): "
            f"{min(values):.2f}-{max(values):.2f}"
            + ("   (target >= 0.5)" if "single" in method else "")
        )
    act_s, grad_s = learner_costs(cfg)
    env_s = 1 / raw
    print(
        f"on the CPU, per frame: emulator {env_s * 1e6:.0f} us, action forward pass "
        f"{act_s * 1e6:.0f} us (batch {cfg.num_envs}), gradient forward + backward "
        f"{grad_s * 1e6:.0f} us (chunks of {cfg.batch_chunk})"
    )
    print(
        f"CEILING single path / raw = {env_s / (env_s + act_s + grad_s):.2f}   (emulator + those "
        "two passes only: no Fisher products, line search, pooling or Python)"
    )
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
