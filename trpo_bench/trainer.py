"""The training loop shared by every gradient method: sample -> surrogate -> step -> record.

Read one iteration top to bottom in :func:`train`. The method (``trpo_bench.methods``) supplies
the sampler and the step rule; everything else (seeding, result files, MLflow, checkpoints) is
the same for all methods.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_bench.config import TrainConfig
from trpo_bench.envs import EnvVector, env_options, make_env
from trpo_bench.evaluation import PolicyEvaluator, is_due, policy_actor, run_episodes
from trpo_bench.methods import METHODS
from trpo_bench.policies import Policy, make_policy
from trpo_bench.sampling import iteration_seeds
from trpo_bench.steps import policy_adam
from trpo_bench.tracking import RunRecorder, defer_signal, episode_stats
from trpo_bench.value import ValueFunction


@dataclass
class Learner:
    """What a run owns: its envs, policy and (optional) value function."""

    envs: EnvVector
    policy: Policy
    value_fn: ValueFunction | None


def build_learner(cfg: TrainConfig) -> Learner:
    """Envs, policy and value function, initialised from ``cfg.seed`` alone."""
    envs = EnvVector(cfg.env, cfg.num_envs, env_options(cfg))
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


def train(cfg: TrainConfig, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``cfg`` to completion, writing the run folder ``out``; returns summary.json's data.

    A checkpoint in ``out`` written by a run of the same config is resumed from. Methods with
    a loop of their own (derivative-free search) are handed the recorder through ``method.run``,
    which returns the final policy artifact as :func:`gradient_loop` does. SIGTERM/SIGINT
    checkpoint the last complete iteration, write summary.json with status ``interrupted``
    and raise :class:`Interrupted` (the CLI exits with 128 + signal number).
    """
    torch.set_num_threads(cfg.torch_threads)
    method = METHODS[cfg.method]
    recorder = RunRecorder(cfg, out, log)
    loop = method.run or gradient_loop
    status, artifact = "failed", None
    try:
        with raise_on_termination():
            artifact = loop(cfg, recorder)
        status = "completed" if is_finite_policy(artifact) else "diverged"
    except Interrupted:
        # SLURM's time limit or preemption: keep the last complete iteration for a rerun.
        status = "interrupted"
        if recorder.checkpoint_last():
            log(f"interrupted: checkpoint written at iteration {recorder.next_iteration}")
        raise
    finally:
        summary = recorder.finish(status, artifact)
    return summary


class Interrupted(BaseException):
    """The job received SIGTERM or SIGINT; ``exit_code`` is 128 + the signal number.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` (in trpo-bench, MLflow or
    a library) can swallow it and let a killed job train on.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received signal {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


@contextlib.contextmanager
def raise_on_termination() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        def interrupt() -> None:
            raise Interrupted(signum)

        # Inside an MLflow call (bounded) the raise waits for the call's end: raised in MLflow's
        # code it would be wrapped, or leave the store's connection half way through a write.
        if not defer_signal(interrupt):
            interrupt()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def gradient_loop(cfg: TrainConfig, recorder: RunRecorder) -> dict[str, Any]:
    """Every gradient method's loop; returns the final policy artifact."""
    method = METHODS[cfg.method]
    learner = build_learner(cfg)
    policy, value_fn = learner.policy, learner.value_fn
    if recorder.resumed_state is not None:
        restore_learner(learner, recorder.resumed_state, cfg)
    evaluator = PolicyEvaluator(cfg.env, cfg.eval_episodes, env_options(cfg))
    try:
        for it in range(recorder.next_iteration, cfg.iterations):
            if not is_finite_policy({"state_dict": policy.state_dict()}):
                # Step rules undo non-finite steps (steps.guard_step); what is left (e.g. a NaN
                # observation in the normaliser) ends the run: status diverged, not completed.
                recorder.log(f"diverged: the policy is not finite before iteration {it}; stopping")
                break
            start = time.perf_counter()
            generator = iteration_generator(cfg.seed, it)
            # 1. Sample with the current policy and build the surrogate (sec. 5, eq. 14).
            sample = method.sampler(learner.envs, policy, cfg, it, value_fn, generator)
            sampled = time.perf_counter()
            with torch.no_grad():
                entropy = float(policy.entropy(sample.objective.old_dist).mean())
            # 2. Step (sec. 6): the method's rule changes the policy in place.
            stats = method.step_rule(policy, sample.objective, cfg, generator)
            if value_fn is not None and value_fn.reject_reason:  # its fit was undone
                reasons = [r for r in (stats.reject_reason, value_fn.reject_reason) if r]
                stats.reject_reason = "; ".join(reasons)
            updated = time.perf_counter()
            # 3. Normalisers learn from this batch only after the step used them unchanged.
            if policy.obs_norm is not None:
                policy.obs_norm.update(sample.obs)
                if value_fn is not None and value_fn.obs_norm is not None:
                    value_fn.obs_norm.update(sample.obs)
            # 4. Evaluate the updated policy on the fixed episodes (not part of the budget).
            evaluation = evaluator(policy, it) if is_due(it, cfg.iterations, cfg.eval_every) else {}
            # 5. Record. The paper's claim made visible: the surrogate's predicted improvement
            # of this update next to the measured change of the average return.
            recorder.record(
                {
                    "sample_time_s": round(sampled - start, 3),
                    "update_time_s": round(updated - sampled, 3),
                    **episode_stats(sample.episode_returns, sample.episode_lengths),
                    "surrogate_before": stats.surrogate_before,
                    "surrogate_after": stats.surrogate_after,
                    "surrogate_gain": stats.surrogate_gain,
                    "expected_gain": stats.expected_gain,
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
                    **evaluation,
                },
                env_steps=sample.env_steps,
                seconds=time.perf_counter() - start,
            )
            recorder.commit(learner_state(learner))
    finally:
        learner.envs.close()
        evaluator.close()
    return policy_artifact(cfg, policy)


def evaluate_policy(
    policy: Policy,
    env_id: str,
    episodes: int,
    seed: int,
    deterministic: bool = True,
    options: dict[str, Any] | None = None,
) -> list[float]:
    """Returns of ``episodes`` whole episodes (the mode action if ``deterministic``), stepped
    together as a vector of envs seeded from ``seed`` (``options``: ``envs.env_options``)."""
    envs = EnvVector(env_id, episodes, options)
    generator = torch.Generator().manual_seed(seed)
    try:
        batch = run_episodes(
            envs,
            policy_actor(policy, deterministic, generator),
            [seed + i for i in range(episodes)],
        )
    finally:
        envs.close()
    return batch.returns.tolist()


def is_finite_policy(artifact: dict[str, Any] | None) -> bool:
    """Whether a policy artifact's weights and buffers (normaliser) are all finite; a run whose
    final policy is not ends ``diverged`` (issue 13). No artifact: nothing to judge, True."""
    if artifact is None or "state_dict" not in artifact:
        return True
    return all(
        bool(torch.isfinite(t).all())
        for t in artifact["state_dict"].values()
        if torch.is_tensor(t) and t.is_floating_point()
    )


def policy_artifact(cfg: TrainConfig, policy: Policy) -> dict[str, Any]:
    """The final policy: weights plus what it takes to rebuild it (``load_policy``)."""
    return {
        "env": cfg.env,
        "env_options": env_options(cfg),
        "hidden_sizes": cfg.hidden_sizes,
        "log_std_init": cfg.log_std_init,
        "normalize_observations": cfg.normalize_observations,
        "state_dict": policy.state_dict(),
    }


def load_policy(path: Path) -> Policy:
    """Rebuild a policy saved by a run (``policy.pt``)."""
    data = torch.load(path, weights_only=False)
    env = make_env(data["env"], data.get("env_options"))
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


def learner_state(learner: Learner) -> dict[str, Any]:
    """Everything a gradient method needs to resume exactly. Env states need no saving: each
    iteration starts from fresh episodes seeded by (seed, iteration), see
    ``sampling.iteration_seeds``, and every other random draw is seeded the same way."""
    value_fn = learner.value_fn
    optimizer = learner.policy.optimizer
    return {
        "policy": learner.policy.state_dict(),
        "policy_optimizer": optimizer.state_dict() if optimizer else None,
        "value_fn": value_fn.state_dict() if value_fn else None,
        "value_optimizer": value_fn.optimizer.state_dict() if value_fn else None,
        "policy_alignment": parameter_alignment(learner.policy),
        "value_alignment": parameter_alignment(value_fn) if value_fn else None,
    }


def restore_learner(learner: Learner, state: dict[str, Any], cfg: TrainConfig) -> None:
    learner.policy.load_state_dict(state["policy"])
    realign_parameters(learner.policy, state.get("policy_alignment"))
    if state.get("policy_optimizer") is not None:
        policy_adam(learner.policy, cfg).load_state_dict(state["policy_optimizer"])
    if learner.value_fn is not None:
        learner.value_fn.load_state_dict(state["value_fn"])
        realign_parameters(learner.value_fn, state.get("value_alignment"))
        learner.value_fn.optimizer.load_state_dict(state["value_optimizer"])


# Byte alignment that CPU kernels are sensitive to (AVX-512 vectors, cache lines).
ALIGNMENT = 64


def parameter_alignment(module: torch.nn.Module) -> dict[str, int]:
    """Each parameter's address modulo :data:`ALIGNMENT` bytes.

    A step that sets the parameters from one flat vector (``vector_to_parameters``) leaves them
    as views into it at offsets that are not 64-byte aligned; a fresh module's are. A matrix
    product rounds differently with the weights at another alignment (batch-1 rollout forwards
    did: issue 13), so a resume must put each parameter where the uninterrupted run had it.
    """
    return {name: p.data_ptr() % ALIGNMENT for name, p in module.named_parameters()}


def realign_parameters(module: torch.nn.Module, alignment: dict[str, int] | None) -> None:
    """Move each parameter (same values, same ``Parameter`` object) to storage at the recorded
    alignment (:func:`parameter_alignment`); ``None`` (an older checkpoint) leaves them."""
    if alignment is None:
        return
    for name, p in module.named_parameters():
        want, size = alignment[name], p.element_size()
        if p.data_ptr() % ALIGNMENT == want:
            continue
        buf = torch.empty(p.numel() + ALIGNMENT // size, dtype=p.dtype, device=p.device)
        start = ((want - buf.data_ptr()) % ALIGNMENT) // size
        moved = buf[start : start + p.numel()].view_as(p)
        moved.copy_(p.detach())
        p.data = moved
