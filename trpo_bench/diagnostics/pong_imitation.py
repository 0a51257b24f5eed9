"""Can the paper's network play Pong from this suite's frames? Imitation of a scripted player.

No method learns Pong at 2M env steps here (docs/reproduction/long.md). Before blaming the
algorithms or the budget, this checks the rest of the pipeline: the frames (52 x 40 pooled
grayscale, 4 stacked, :mod:`trpo_bench.envs.atari`) and the paper's 33,458-parameter network
(:class:`~trpo_bench.core.policies.CategoricalCNNPolicy`). If a policy in that class, fed those
frames, can play Pong well, the frames carry what the game needs and the network can represent
a good policy; what is then missing is the reinforcement learning.

1. **A scripted player** (:func:`tracker_action`) reads the emulator's RAM (the ball's and
   its own paddle's rows, bytes 54 and 51) and moves its paddle toward the ball. It acts from
   information the policy does not get, and is the teacher only.
2. **Imitation with DAgger** (Ross et al. 2011): round 0 plays the teacher with a share of
   random actions (states off its own path, still labelled with its action); each later round
   plays the current network, sampled, and labels the states it reaches with the teacher's
   action. The network is fitted by cross-entropy (Adam) on all the rounds' frames.
3. **Evaluation** by the runs' own protocol (:class:`~trpo_bench.run.evaluation.PolicyEvaluator`:
   the same 10 episodes, deterministic and sampled), beside the teacher's score.

Run ``python -m trpo_bench.diagnostics.pong_imitation --out FILE`` (about 15 minutes on one core
here); the JSON it writes is what docs/reproduction/long.md reports. Same seed, same numbers on
one machine (one torch thread).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_bench.core.policies import CategoricalCNNPolicy, make_policy
from trpo_bench.envs.registry import make_env
from trpo_bench.run.atomic import write_json
from trpo_bench.run.evaluation import EVAL_SEED, PolicyEvaluator
from trpo_bench.run.provenance import git_commit, machine_text, package_versions

__all__ = [
    "ImitationConfig",
    "accuracy",
    "collect",
    "fit_epoch",
    "plateau_epochs",
    "run_imitation",
    "teacher_score",
    "tracker_action",
]

ENV_ID = "Pong-v5"
# Pong's RAM (the Atari Annotated RAM Interface, Anand et al. 2019): the ball's row and the
# player's (right) paddle row; 0 while no ball is in play.
RAM_BALL_Y, RAM_PLAYER_Y = 54, 51
# The minimal action set: NOOP, FIRE, RIGHT (paddle up), LEFT (paddle down), RIGHTFIRE, LEFTFIRE.
NOOP, UP, DOWN = 0, 2, 3
# Aim this many rows below the paddle's RAM row, within a dead band of +-2 rows: measured over
# offsets -8..12, offset 2 wins the deterministic game 21-10 (offset 0: 21-12; 4 and up lose).
TRACKER_OFFSET = 2
TRACKER_DEADBAND = 2


def tracker_action(ram: np.ndarray) -> int:
    """The scripted player's action for the emulator's ``ram``: toward the ball, else NOOP."""
    ball, paddle = int(ram[RAM_BALL_Y]), int(ram[RAM_PLAYER_Y]) + TRACKER_OFFSET
    if ball == 0:
        return NOOP
    if ball > paddle + TRACKER_DEADBAND:
        return DOWN
    if ball < paddle - TRACKER_DEADBAND:
        return UP
    return NOOP


@dataclass
class ImitationConfig:
    """Every setting of the check (written to the result's ``config``)."""

    seed: int = 0
    steps_per_round: int = 40_000  # env steps collected per DAgger round
    rounds: int = 2  # round 0 from the teacher, the rest from the network
    teacher_random_share: float = 0.25  # round 0: share of actions drawn uniformly
    first_epochs: int = 40  # passes over round 0's frames
    epochs: int = 10  # passes over all frames collected so far, after each later round
    minibatch: int = 128
    learning_rate: float = 1e-3
    heldout_share: float = 0.1  # of each round's frames, never trained on
    eval_episodes: int = 10  # as the long grid's runs (config/long.yaml)


def _ale(env: Any) -> Any:
    return env.unwrapped.ale


def teacher_score(max_steps: int = 30_000) -> tuple[float, int]:
    """The scripted player's score and length on the evaluation's game (the emulator without
    sticky actions is deterministic: every evaluation episode is this one)."""
    env = make_env(ENV_ID)
    env.reset(seed=EVAL_SEED)
    total, steps = 0.0, 0
    while steps < max_steps:
        _, reward, terminated, truncated, _ = env.step(tracker_action(_ale(env).getRAM()))
        total, steps = total + float(reward), steps + 1
        if terminated or truncated:
            break
    env.close()
    return total, steps


def collect(
    env: Any,
    steps: int,
    rng: np.random.Generator,
    policy: CategoricalCNNPolicy | None = None,
    random_share: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``steps`` frames stacks, the teacher's action at each, and the returns of the games that
    ended. Acting: ``policy`` sampled (with ``generator``) if given, else the teacher with
    ``random_share`` of its actions replaced by uniform ones (drawn from ``rng``)."""
    frames = np.empty((steps, *env.observation_space.shape), dtype=np.uint8)
    labels = np.empty(steps, dtype=np.int64)
    returns: list[float] = []
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    total = 0.0
    for t in range(steps):
        frames[t], labels[t] = obs, tracker_action(_ale(env).getRAM())
        if policy is not None:
            with torch.no_grad():
                dist = policy.dist_params(torch.from_numpy(obs[None]))
            action = int(policy.sample(dist, generator)[0])
        elif rng.random() < random_share:
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(labels[t])
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            total = 0.0
    return frames, labels, returns


def accuracy(policy: CategoricalCNNPolicy, frames: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``frames`` whose most likely action is the teacher's."""
    hits = 0
    with torch.no_grad():
        for start in range(0, len(frames), 1024):
            dist = policy.dist_params(torch.from_numpy(frames[start : start + 1024]))
            hits += int((policy.mode(dist).numpy() == labels[start : start + 1024]).sum())
    return hits / max(len(frames), 1)


def fit_epoch(
    policy: CategoricalCNNPolicy,
    frames: np.ndarray,
    labels: np.ndarray,
    minibatch: int,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One pass of minibatch cross-entropy (the teacher's action's negative log-probability)
    over ``frames`` in a random order; returns its mean loss."""
    n, loss_sum = len(frames), 0.0
    x, y = torch.from_numpy(frames), torch.from_numpy(labels)
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, minibatch):
        mb = order[start : start + minibatch]
        loss = -policy.log_prob(policy.dist_params(x[mb]), y[mb]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(mb)
    return loss_sum / max(n, 1)


def plateau_epochs(curve: Sequence[float], majority: float, margin: float = 0.05) -> int | None:
    """Epochs before held-out accuracy first exceeds the majority label's share by ``margin``
    (the network beyond always answering the commonest action); None if it never does."""
    return next((e for e, acc in enumerate(curve) if acc > majority + margin), None)


def _split(n: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    held = rng.random(n) < share
    return np.flatnonzero(~held), np.flatnonzero(held)


def run_imitation(cfg: ImitationConfig, log: Any = print) -> dict[str, Any]:
    """The whole check (module docstring); returns the result to write."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    env = make_env(ENV_ID)
    policy = make_policy(env.observation_space, env.action_space, ())
    assert isinstance(policy, CategoricalCNNPolicy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    train_x: list[np.ndarray] = []
    train_y: list[np.ndarray] = []
    held_x: list[np.ndarray] = []
    held_y: list[np.ndarray] = []
    rounds: list[dict[str, Any]] = []
    evaluator = PolicyEvaluator(ENV_ID, cfg.eval_episodes, None)
    first_curve: list[float] = []
    for r in range(cfg.rounds):
        if r == 0:
            frames, labels, games = collect(
                env, cfg.steps_per_round, rng, random_share=cfg.teacher_random_share
            )
        else:
            frames, labels, games = collect(
                env, cfg.steps_per_round, rng, policy=policy, generator=generator
            )
        train, held = _split(len(frames), cfg.heldout_share, rng)
        train_x.append(frames[train])
        train_y.append(labels[train])
        held_x.append(frames[held])
        held_y.append(labels[held])
        x, y = np.concatenate(train_x), np.concatenate(train_y)
        hx, hy = np.concatenate(held_x), np.concatenate(held_y)
        loss = math.nan
        for _ in range(cfg.first_epochs if r == 0 else cfg.epochs):
            loss = fit_epoch(policy, x, y, cfg.minibatch, generator, optimizer)
            if r == 0:  # round 0's learning curve: how long the network sits at the prior
                first_curve.append(accuracy(policy, hx, hy))
        ev = evaluator(policy, r)
        row = {
            "round": r,
            "acting": "teacher" if r == 0 else "network (sampled)",
            "games_while_collecting": len(games),
            "collecting_return_mean": float(np.mean(games)) if games else None,
            "frames_trained": len(x),
            "loss": loss,
            "train_accuracy": accuracy(policy, x, y),
            "heldout_accuracy": accuracy(policy, hx, hy),
            "majority_share": float(max(np.mean(y == a) for a in (NOOP, UP, DOWN))),
            "eval_return_mean": ev["eval_return_mean"],
            "eval_episode_length_mean": ev["eval_episode_length_mean"],
            "eval_sampled_return_mean": ev["eval_sampled_return_mean"],
            "eval_sampled_return_std": ev["eval_sampled_return_std"],
            "eval_sampled_episode_length_mean": ev["eval_sampled_episode_length_mean"],
            "wall_time_s": round(time.perf_counter() - start, 1),
        }
        rounds.append(row)
        log(
            f"round {r}: heldout accuracy {row['heldout_accuracy']:.3f}, deterministic "
            f"{row['eval_return_mean']:.1f}, sampled {row['eval_sampled_return_mean']:.1f} "
            f"({row['wall_time_s']:.0f} s)"
        )
    evaluator.close()
    env.close()
    score, length = teacher_score()
    return {
        "env": ENV_ID,
        "config": asdict(cfg),
        "policy_parameters": sum(p.numel() for p in policy.parameters()),
        "teacher": {
            "offset": TRACKER_OFFSET,
            "deadband": TRACKER_DEADBAND,
            "return": score,
            "episode_length": length,
        },
        "rounds": rounds,
        "first_round_heldout_accuracy_by_epoch": first_curve,
        "first_round_steps_per_epoch": math.ceil(len(train_x[0]) / cfg.minibatch),
        "plateau_epochs": plateau_epochs(first_curve, rounds[0]["majority_share"]),
        "git_commit": git_commit(),
        "machine": machine_text(),
        "versions": package_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    sizes = ("seed", "steps_per_round", "rounds", "first_epochs", "epochs", "eval_episodes")
    defaults = ImitationConfig()
    for name in sizes:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    bad = [
        f"--{n.replace('_', '-')} {getattr(args, n)}"
        for n in sizes[1:]
        if getattr(args, n) < (0 if n == "epochs" else 1)
    ]
    if bad:
        parser.error(f"{', '.join(bad)}: --epochs must be at least 0, the other sizes at least 1")
    cfg = ImitationConfig(**{n: getattr(args, n) for n in sizes})
    write_json(args.out, run_imitation(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
