"""The training loop shared by every gradient method: sample -> surrogate -> step -> record.

Read one iteration top to bottom in :func:`train`. The method (``trpo_bench.methods.registry``)
supplies
the sampler and the step rule; everything else (seeding, result files, MLflow, checkpoints) is
the same for all methods.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from trpo_bench.config import TrainConfig
from trpo_bench.core.policies import Policy
from trpo_bench.envs.registry import EnvVector, env_options
from trpo_bench.methods.registry import METHODS
from trpo_bench.methods.steps import policy_adam
from trpo_bench.run.evaluation import PolicyEvaluator, is_due, policy_actor, run_episodes
from trpo_bench.run.learner import Learner, build_learner, policy_artifact
from trpo_bench.run.mlflow_log import defer_signal
from trpo_bench.run.progress import episode_stats
from trpo_bench.run.recorder import RunRecorder, completed_summary
from trpo_bench.run.timelimit import TimeLimit, TimeLimitReached
from trpo_bench.sampling.single_path import (
    iteration_seeds,
    open_episodes_state,
    restore_open_episodes,
)


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The torch generator for one iteration's action noise and subsamples."""
    _, torch_seed = iteration_seeds(seed, iteration, 0)
    return torch.Generator().manual_seed(torch_seed)


def train(
    cfg: TrainConfig,
    out: Path,
    log: Callable[[str], None] = print,
    time_limit: TimeLimit | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` to completion, writing the run folder ``out``; returns summary.json's data.

    A checkpoint in ``out`` written by a run of the same config is resumed from; a folder that
    already holds the run complete (:func:`~trpo_bench.run.recorder.completed_summary`) is left as
    it is. Methods with a loop of their own (derivative-free search) are handed the recorder
    through ``method.run``, which returns the final policy artifact as :func:`gradient_loop`
    does. SIGTERM/SIGINT checkpoint the last complete iteration, write summary.json with status
    ``interrupted`` and raise :class:`Interrupted` (the CLI exits with 128 + signal number);
    with a ``time_limit``, a run that cannot fit another iteration does the same and raises
    :class:`~trpo_bench.run.timelimit.TimeLimitReached` (exit 75), for the next job to resume.
    """
    done = completed_summary(out, cfg)
    if done is not None:
        log(f"{out} already holds this run complete ({cfg.iterations} iterations): nothing to do")
        return done
    torch.set_num_threads(cfg.torch_threads)
    method = METHODS[cfg.method]
    recorder = RunRecorder(cfg, out, log)
    recorder.time_limit = time_limit
    if time_limit is not None:
        time_limit.mark()  # the folder checks and the MLflow run are not an iteration
    loop = method.run or gradient_loop
    status, artifact = "failed", None
    try:
        with raise_on_termination():
            artifact = loop(cfg, recorder)
        status = "completed" if is_finite_policy(artifact) else "diverged"
    except TimeLimitReached:
        status = "interrupted"  # commit() has checkpointed the last iteration
        log(f"time limit: checkpoint written at iteration {recorder.next_iteration}")
        raise
    except Interrupted:
        # SLURM's time limit or preemption: keep the last complete iteration for a rerun.
        status = "interrupted"
        if recorder.checkpoint_last():
            log(f"interrupted: checkpoint written at iteration {recorder.next_iteration}")
        raise
    finally:
        # Writing the result files is not interrupted: a SIGTERM arriving meanwhile (the time
        # limit) is noted and dropped, so a run that completed stays completed (exit 0), and one
        # that stopped keeps its status and exit status. SIGKILL (SLURM's KillWait, 30 s by
        # default, later) is the only way to cut finish(), whose MLflow calls are bounded.
        with hold_termination() as held:
            summary = recorder.finish(status, artifact)
        if held:
            log(
                f"{signal.Signals(held[0]).name} received while writing the result files of a "
                f"run that is {status}; they are written"
            )
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


@contextlib.contextmanager
def hold_termination() -> Iterator[list[int]]:
    """Inside the block SIGTERM and SIGINT are noted, not acted on; the list yielded holds the
    signals that arrived (main thread only; elsewhere nothing is held)."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    old = {
        sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield held
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
                    # Every StepStats field and extra key (trpo_bench.api), no list kept here.
                    **stats.progress_columns(between={"entropy": entropy, **sample.extra}),
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


def learner_state(learner: Learner) -> dict[str, Any]:
    """Everything a gradient method needs to resume exactly. Env states need no saving when
    each iteration starts from fresh episodes seeded by (seed, iteration), see
    ``sampling.iteration_seeds`` (every other random draw is seeded the same way); with
    ``continue_episodes`` the open episodes are saved, env states included."""
    value_fn = learner.value_fn
    optimizer = learner.policy.optimizer
    return {
        "policy": learner.policy.state_dict(),
        "policy_optimizer": optimizer.state_dict() if optimizer else None,
        "value_fn": value_fn.state_dict() if value_fn else None,
        "value_optimizer": value_fn.optimizer.state_dict() if value_fn else None,
        "policy_alignment": parameter_alignment(learner.policy),
        "value_alignment": parameter_alignment(value_fn) if value_fn else None,
        "open_episodes": open_episodes_state(learner.envs),
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
    if state.get("open_episodes") is not None:
        restore_open_episodes(learner.envs, state["open_episodes"])


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
