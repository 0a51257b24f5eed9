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
3. **Frames minus Pong's background.** Fitted on the frames as the runs feed them (in [0, 1],
   a constant background of 87/255 with a few small objects), the network sits at the prior
   (always the commonest action) for a long and seed-dependent number of epochs; on the frames
   minus the background it leaves it within a few. The two are one function class: a network
   on ``x - c`` is the network on ``x`` with the first convolution's bias lowered by
   ``c`` times the sum of its weights (:func:`fold_offset`; the network's ``frame_offset``, config
   key ``atari_frame_offset`` in the runs), so the evaluated policy is the runs' network with
   no offset, on the runs' frames. Round 0 is
   also fitted on the raw frames from the same initialisation, for the record of how long
   that sits at the prior.
4. **Evaluation** by the runs' own protocol (:class:`~trpo_bench.run.evaluation.PolicyEvaluator`:
   the same 10 episodes, deterministic and sampled), beside the teacher's score; and how much
   each policy's actions depend on the frame (:func:`state_dependence`), for the imitating
   network and, given ``--measure RUN_FOLDER``, for the runs' final policies.

Run ``python -m trpo_bench.diagnostics.pong_imitation --out FILE`` (about 20 minutes on one core
here); the JSON it writes is what docs/reproduction/long.md reports. Same seed, same numbers on
one machine (one torch thread).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_bench.config import ConfigError
from trpo_bench.core.policies import CategoricalCNNPolicy
from trpo_bench.envs.registry import make_env
from trpo_bench.run.atomic import write_json
from trpo_bench.run.evaluation import EVAL_SEED, PolicyEvaluator, policy_actor
from trpo_bench.run.files import POLICY_FILE, SUMMARY_FILE
from trpo_bench.run.learner import load_policy
from trpo_bench.run.provenance import git_commit, machine_text, package_versions

__all__ = [
    "ImitationConfig",
    "accuracy",
    "collect",
    "fit_epoch",
    "fold_offset",
    "plateau_epochs",
    "run_imitation",
    "state_dependence",
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
# Pong's background in the pooled grayscale frames (every pixel off the ball, paddles, walls
# and score; tests/test_atari.py reads it the same way).
PONG_BACKGROUND = 87


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
    center_frames: bool = True  # fit on the frames minus PONG_BACKGROUND (module doc, 3.)
    raw_probe_epochs: int = 30  # round 0 also fitted on the raw frames, curve recorded only
    eval_episodes: int = 10  # as the long grid's runs (config/long.yaml)


def fold_offset(policy: CategoricalCNNPolicy, obs_shape: Sequence[int]) -> CategoricalCNNPolicy:
    """The network on the raw frames (``frame_offset`` 0) that computes what ``policy``
    computes with its ``frame_offset`` c: ``W (x - c) + b = W x + (b - c sum(W))`` in the first
    convolution."""
    head = policy.logits_net[-1]
    plain = CategoricalCNNPolicy(obs_shape, head.out_features)
    plain.load_state_dict(policy.state_dict())
    with torch.no_grad():
        first = plain.logits_net[0][0]
        first.bias -= policy.frame_offset * first.weight.sum(dim=(1, 2, 3))
    return plain


def state_dependence(policy: CategoricalCNNPolicy, frames: np.ndarray) -> dict[str, Any]:
    """How much ``policy``'s action distribution depends on the frame, over ``frames``: the
    mean KL from each frame's distribution to their average (the mutual information of frame
    and action under these frames; 0: the same actions whatever the frame), the average's
    action shares, and how many units of the hidden layer never fire on these frames."""
    logps, hidden = [], []
    conv, fc = policy.logits_net[0], policy.logits_net[1]
    with torch.no_grad():
        for start in range(0, len(frames), 1024):
            x = torch.from_numpy(frames[start : start + 1024])
            logps.append(policy.dist_params(x)[0])
            hidden.append(fc(conv(policy.preprocess(x))) > 0)
    logp = torch.cat(logps).double()
    mean = logp.exp().mean(0)
    kl = (logp.exp() * (logp - mean.log())).sum(-1).mean()
    fired = torch.cat(hidden).any(0)
    return {
        "kl_to_mean": float(kl),
        "action_shares": [round(float(p), 4) for p in mean],
        "dead_hidden_units": int((~fired).sum()),
        "hidden_units": int(fired.numel()),
    }


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
    act = policy_actor(policy, False, generator) if policy is not None else None
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    total = 0.0
    for t in range(steps):
        frames[t], labels[t] = obs, tracker_action(_ale(env).getRAM())
        if act is not None:
            action = int(act(obs[None])[0])
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


def _fit_curve(
    policy: CategoricalCNNPolicy,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    epochs: int,
    cfg: ImitationConfig,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
) -> tuple[float, list[float]]:
    """``epochs`` epochs on ``data`` (train frames, labels, held-out frames, labels); the last
    epoch's loss and the held-out accuracy after each epoch."""
    x, y, hx, hy = data
    loss, curve = math.nan, []
    for _ in range(epochs):
        loss = fit_epoch(policy, x, y, cfg.minibatch, generator, optimizer)
        curve.append(accuracy(policy, hx, hy))
    return loss, curve


def _run_of(folder: Path) -> dict[str, Any]:
    """Which run a measured folder holds (its summary.json, read as data), else its name."""
    summary_file = folder / SUMMARY_FILE
    if not summary_file.is_file():
        return {"run": folder.name}
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    keys = ("env", "method", "seed", "env_steps", "iterations_done", "final_eval_sampled_return")
    offset = summary.get("config", {}).get("atari_frame_offset", 0.0)
    return {"run": folder.name, **{k: summary.get(k) for k in keys}, "atari_frame_offset": offset}


def _evaluated(row: dict[str, Any], ev: Mapping[str, float]) -> dict[str, Any]:
    keys = ("eval_return_mean", "eval_episode_length_mean", "eval_sampled_return_mean",
            "eval_sampled_return_std", "eval_sampled_episode_length_mean")  # fmt: skip
    return {**row, **{k: ev[k] for k in keys}}


def run_imitation(
    cfg: ImitationConfig, measure: Sequence[Path] = (), log: Any = print
) -> dict[str, Any]:
    """The whole check (module docstring); ``measure``: run folders whose final policy's
    :func:`state_dependence` is measured on the held-out frames. Returns the result to write."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    env = make_env(ENV_ID)
    shape, actions = env.observation_space.shape, int(env.action_space.n)
    offset = PONG_BACKGROUND / 255.0 if cfg.center_frames else 0.0
    torch.manual_seed(cfg.seed)
    learner = CategoricalCNNPolicy(shape, actions, frame_offset=offset)
    raw = CategoricalCNNPolicy(shape, actions)
    raw.load_state_dict(learner.state_dict())  # the same initialisation, raw frames
    optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.learning_rate)
    parts: list[list[np.ndarray]] = [[], [], [], []]  # train x, y, held-out x, y
    rounds: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    evaluator = PolicyEvaluator(ENV_ID, cfg.eval_episodes, None)
    for r in range(cfg.rounds):
        if r == 0:
            frames, labels, games = collect(
                env, cfg.steps_per_round, rng, random_share=cfg.teacher_random_share
            )
        else:
            acting = fold_offset(learner, shape)
            frames, labels, games = collect(
                env, cfg.steps_per_round, rng, policy=acting, generator=generator
            )
        train, held = _split(len(frames), cfg.heldout_share, rng)
        new = (frames[train], labels[train], frames[held], labels[held])
        for part, array in zip(parts, new, strict=True):
            part.append(array)
        data = tuple(np.concatenate(part) for part in parts)
        x, y, hx, hy = data
        if r == 0 and cfg.raw_probe_epochs > 0:
            raw_opt = torch.optim.Adam(raw.parameters(), lr=cfg.learning_rate)
            raw_gen = torch.Generator().manual_seed(cfg.seed)
            _, curves["raw"] = _fit_curve(raw, data, cfg.raw_probe_epochs, cfg, raw_gen, raw_opt)
            generator.manual_seed(cfg.seed)  # the learner sees the same minibatch order
        epochs = cfg.first_epochs if r == 0 else cfg.epochs
        loss, curve = _fit_curve(learner, data, epochs, cfg, generator, optimizer)
        if r == 0:
            curves["centred" if cfg.center_frames else "learner"] = curve
        policy = fold_offset(learner, shape)
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
            "wall_time_s": round(time.perf_counter() - start, 1),
        }
        rounds.append(_evaluated(row, evaluator(policy, r)))
        log(
            f"round {r}: heldout accuracy {row['heldout_accuracy']:.3f}, deterministic "
            f"{rounds[-1]['eval_return_mean']:.1f}, sampled "
            f"{rounds[-1]['eval_sampled_return_mean']:.1f} ({row['wall_time_s']:.0f} s)"
        )
    evaluator.close()
    env.close()
    held_frames = np.concatenate(parts[2])
    torch.manual_seed(cfg.seed)
    untrained = CategoricalCNNPolicy(shape, actions)
    centred = CategoricalCNNPolicy(shape, actions, frame_offset=PONG_BACKGROUND / 255.0)
    centred.load_state_dict(untrained.state_dict())  # the same weights, the frames centred
    dependence = {
        "untrained": state_dependence(untrained, held_frames),
        "untrained_centred": state_dependence(centred, held_frames),
        "imitation": state_dependence(fold_offset(learner, shape), held_frames),
    }
    measured = []
    for folder in measure:
        policy = load_policy(Path(folder) / POLICY_FILE)
        if not isinstance(policy, CategoricalCNNPolicy):
            raise ConfigError(f"{folder}: its policy is not the paper's Atari network")
        measured.append({**_run_of(Path(folder)), **state_dependence(policy, held_frames)})
    score, length = teacher_score()
    majority = rounds[0]["majority_share"]
    return {
        "env": ENV_ID,
        "config": asdict(cfg),
        "policy_parameters": sum(p.numel() for p in learner.parameters()),
        "background": PONG_BACKGROUND,
        "teacher": {
            "offset": TRACKER_OFFSET,
            "deadband": TRACKER_DEADBAND,
            "return": score,
            "episode_length": length,
        },
        "rounds": rounds,
        "first_round_heldout_accuracy_by_epoch": curves,
        "first_round_steps_per_epoch": math.ceil(len(parts[0][0]) / cfg.minibatch),
        "plateau_epochs": {k: plateau_epochs(c, majority) for k, c in curves.items()},
        "state_dependence": dependence,
        "runs_measured": measured,
        "git_commit": git_commit(),
        "machine": machine_text(),
        "versions": package_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--measure",
        type=Path,
        nargs="*",
        default=[],
        metavar="RUN_FOLDER",
        help="run folders of Pong runs whose final policy (policy.pt) is measured too",
    )
    sizes = ("seed", "steps_per_round", "rounds", "first_epochs", "epochs", "eval_episodes",
             "raw_probe_epochs")  # fmt: skip
    defaults = ImitationConfig()
    for name in sizes:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    bad = [
        f"--{n.replace('_', '-')} {getattr(args, n)}"
        for n in sizes[1:]
        if getattr(args, n) < (0 if n in ("epochs", "raw_probe_epochs") else 1)
    ]
    if bad:
        parser.error(f"{', '.join(bad)}: --epochs must be at least 0, the other sizes at least 1")
    missing = [str(f) for f in args.measure if not (f / POLICY_FILE).is_file()]
    if missing:
        parser.error(f"--measure: no {POLICY_FILE} in {', '.join(missing)}")
    cfg = ImitationConfig(**{n: getattr(args, n) for n in sizes})
    write_json(args.out, run_imitation(cfg, args.measure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
