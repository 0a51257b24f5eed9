"""The training loop shared by every gradient method: sample -> surrogate -> step -> record.

Read one iteration top to bottom in :func:`train`. The method (``trpo_bench.methods``) supplies
the sampler and the step rule; everything else (seeding, result files, MLflow, checkpoints) is
the same for all methods.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_bench.config import TrainConfig
from trpo_bench.envs import EnvVector
from trpo_bench.methods import METHODS
from trpo_bench.policies import Policy, make_policy
from trpo_bench.sampling import iteration_seeds
from trpo_bench.tracking import (
    CHECKPOINT_FILE,
    POLICY_FILE,
    PROGRESS_FILE,
    SUMMARY_FILE,
    MlflowRun,
    atomic_torch_save,
    git_commit,
    package_versions,
    write_json,
    write_progress_csv,
)
from trpo_bench.value import ValueFunction


@dataclass
class Learner:
    """What a run owns: its envs, policy and (optional) value function."""

    envs: EnvVector
    policy: Policy
    value_fn: ValueFunction | None


def build_learner(cfg: TrainConfig) -> Learner:
    """Envs, policy and value function, initialised from ``cfg.seed`` alone."""
    envs = EnvVector(cfg.env, cfg.num_envs)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        policy = make_policy(
            envs.observation_space,
            envs.action_space,
            cfg.hidden_sizes,
            cfg.log_std_init,
            cfg.normalize_observations,
        )
        value_fn = None
        if cfg.baseline == "value":
            obs_dim = int(np.prod(envs.observation_space.shape))
            value_fn = ValueFunction(
                obs_dim, cfg.vf_hidden_sizes, cfg.vf_learning_rate, cfg.normalize_observations
            )
    return Learner(envs, policy, value_fn)


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The torch generator for one iteration's action noise and subsamples."""
    _, torch_seed = iteration_seeds(seed, iteration, 0)
    return torch.Generator().manual_seed(torch_seed)


def _finite_mean(x: list[float]) -> float:
    return float(np.mean(x)) if x else math.nan


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Final figures of a run from its progress rows."""
    returns = [r["return_mean"] for r in rows if math.isfinite(r["return_mean"])]
    changes = [r["return_change"] for r in rows if math.isfinite(r["return_change"])]
    return {
        "iterations_done": len(rows),
        "env_steps": rows[-1]["env_steps"] if rows else 0,
        "wall_time_s": rows[-1]["wall_time_s"] if rows else 0.0,
        "final_return": returns[-1] if returns else math.nan,
        "best_return": max(returns) if returns else math.nan,
        "average_return": _finite_mean(returns),  # rllab's metric: mean over all iterations
        "steps_accepted": sum(int(r["step_accepted"]) for r in rows),
        # The paper's claim: how often the measured return did not decrease after an update.
        "monotonic_fraction": float(np.mean([c >= 0 for c in changes])) if changes else math.nan,
    }


def train(cfg: TrainConfig, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``cfg`` to completion, writing the run folder ``out``; returns summary.json's data.

    A checkpoint in ``out`` written by a run of the same config is resumed from.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.torch_threads)
    method = METHODS[cfg.method]
    learner = build_learner(cfg)
    policy, value_fn = learner.policy, learner.value_fn

    rows: list[dict[str, Any]] = []
    resume = load_checkpoint(out / CHECKPOINT_FILE, cfg, learner)
    if resume is not None:
        rows = resume["rows"]
        log(f"resuming {out} at iteration {len(rows)}")
    run_name = f"{cfg.env}/{cfg.method}/seed{cfg.seed}"
    tags = {
        "env": cfg.env,
        "method": cfg.method,
        "seed": str(cfg.seed),
        "git_commit": git_commit(),
        "mlflow.runName": run_name,
    }
    tracker = (
        MlflowRun(
            cfg,
            out,
            run_name,
            tags,
            cfg.to_dict(),
            resume_run_id=resume.get("mlflow_run_id") if resume else None,
        )
        if cfg.mlflow
        else None
    )

    elapsed = rows[-1]["wall_time_s"] if rows else 0.0
    env_steps = rows[-1]["env_steps"] if rows else 0
    status = "failed"
    write_json(out / SUMMARY_FILE, {"status": "running", "config": cfg.to_dict()})
    try:
        for it in range(len(rows), cfg.iterations):
            start = time.perf_counter()
            generator = iteration_generator(cfg.seed, it)
            # 1. Sample with the current policy and build the surrogate (sec. 5, eq. 14).
            sample = method.sampler(learner.envs, policy, cfg, it, value_fn, generator)
            sampled = time.perf_counter()
            with torch.no_grad():
                entropy = float(policy.entropy(sample.objective.old_dist).mean())
            # 2. Step (sec. 6): the method's rule changes the policy in place.
            stats = method.step_rule(policy, sample.objective, cfg, generator)
            updated = time.perf_counter()
            # 3. Normalisers learn from this batch only after the step used them unchanged.
            if policy.obs_norm is not None:
                policy.obs_norm.update(sample.obs)
                if value_fn is not None and value_fn.obs_norm is not None:
                    value_fn.obs_norm.update(sample.obs)
            # 4. Record.
            env_steps += sample.env_steps
            elapsed += time.perf_counter() - start
            ret = sample.episode_returns
            prev = rows[-1]["return_mean"] if rows else math.nan
            row: dict[str, Any] = {
                "iteration": it,
                "env_steps": env_steps,
                "wall_time_s": round(elapsed, 3),
                "sample_time_s": round(sampled - start, 3),
                "update_time_s": round(updated - sampled, 3),
                "return_mean": _finite_mean(ret),
                "return_std": float(np.std(ret)) if ret else math.nan,
                "return_min": float(np.min(ret)) if ret else math.nan,
                "return_max": float(np.max(ret)) if ret else math.nan,
                "episodes": len(ret),
                "episode_length_mean": _finite_mean([float(x) for x in sample.episode_lengths]),
                # The paper's claim made visible: the surrogate's predicted improvement of this
                # update, and the measured change of the average return since the last batch.
                "surrogate_before": stats.surrogate_before,
                "surrogate_after": stats.surrogate_after,
                "surrogate_gain": stats.surrogate_gain,
                "expected_gain": stats.expected_gain,
                "return_change": _finite_mean(ret) - prev if ret else math.nan,
                "kl_mean": stats.kl_mean,
                "kl_max": stats.kl_max,
                "linesearch_steps": stats.linesearch_steps,
                "step_accepted": stats.step_accepted,
                "step_fraction": stats.step_fraction,
                "grad_norm": stats.grad_norm,
                "entropy": entropy,
                **sample.extra,
                **stats.extra,
                "reject_reason": stats.reject_reason,
            }
            rows.append(row)
            write_progress_csv(out / PROGRESS_FILE, rows)
            if tracker is not None:
                tracker.log_metrics(
                    {
                        k: v
                        for k, v in row.items()
                        if isinstance(v, int | float) and k != "iteration"
                    },
                    it,
                )
            log(_progress_line(cfg, row))
            if cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(
                    out / CHECKPOINT_FILE, cfg, learner, rows, tracker.run_id if tracker else None
                )
        status = "completed"
    finally:
        summary = {
            "status": status,
            "env": cfg.env,
            "method": cfg.method,
            "seed": cfg.seed,
            **summarize(rows),
            "config": cfg.to_dict(),
            "versions": package_versions(),
            "git_commit": git_commit(),
        }
        if status == "completed":
            atomic_torch_save(policy_artifact(cfg, policy), out / POLICY_FILE)
        write_json(out / SUMMARY_FILE, summary)
        learner.envs.close()
        if tracker is not None:
            tracker.finish(
                "FINISHED" if status == "completed" else "FAILED",
                [out / PROGRESS_FILE, out / SUMMARY_FILE, out / POLICY_FILE],
            )
    return summary


def _progress_line(cfg: TrainConfig, row: dict[str, Any]) -> str:
    accepted = "yes" if row["step_accepted"] else f"NO ({row['reject_reason']})"
    return (
        f"[{cfg.env} {cfg.method} seed {cfg.seed}] iter {row['iteration'] + 1}/"
        f"{cfg.iterations}  steps {row['env_steps']}  return {row['return_mean']:.1f}  "
        f"kl {row['kl_mean']:.4f}  step {accepted}  {row['wall_time_s']:.0f}s"
    )


def policy_artifact(cfg: TrainConfig, policy: Policy) -> dict[str, Any]:
    """The final policy: weights plus what it takes to rebuild it (``load_policy``)."""
    return {
        "env": cfg.env,
        "hidden_sizes": cfg.hidden_sizes,
        "log_std_init": cfg.log_std_init,
        "normalize_observations": cfg.normalize_observations,
        "state_dict": policy.state_dict(),
    }


def load_policy(path: Path) -> Policy:
    """Rebuild a policy saved by a run (``policy.pt``)."""
    from trpo_bench.envs import make_env

    data = torch.load(path, weights_only=False)
    env = make_env(data["env"])
    policy = make_policy(
        env.observation_space,
        env.action_space,
        data["hidden_sizes"],
        data["log_std_init"],
        data["normalize_observations"],
    )
    policy.load_state_dict(data["state_dict"])
    env.close()
    return policy


def save_checkpoint(
    path: Path,
    cfg: TrainConfig,
    learner: Learner,
    rows: list[dict[str, Any]],
    mlflow_run_id: str | None,
) -> None:
    """Everything needed to resume exactly. Env states need no saving: each iteration starts
    from fresh episodes seeded by (seed, iteration), see ``sampling.iteration_seeds``."""
    state = {
        "config": cfg.to_dict(),
        "rows": rows,
        "policy": learner.policy.state_dict(),
        "value_fn": learner.value_fn.state_dict() if learner.value_fn else None,
        "value_optimizer": (learner.value_fn.optimizer.state_dict() if learner.value_fn else None),
        "mlflow_run_id": mlflow_run_id,
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, cfg: TrainConfig, learner: Learner) -> dict[str, Any] | None:
    """Restore ``learner`` from ``path`` if it holds a run of the same config."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    if state["config"] != cfg.to_dict():
        raise RuntimeError(
            f"{path} belongs to a run with a different config; remove it or use another --out"
        )
    learner.policy.load_state_dict(state["policy"])
    if learner.value_fn is not None:
        learner.value_fn.load_state_dict(state["value_fn"])
        learner.value_fn.optimizer.load_state_dict(state["value_optimizer"])
    return state
