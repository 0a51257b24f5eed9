"""Step rules: given the surrogate objective of a batch, change the policy (sec. 6, app. C).

A step rule takes an :class:`~trpo_bench.api.Objective` (built by a sampler) and updates the
policy in place, returning :class:`~trpo_bench.api.StepStats` (the contract:
:mod:`trpo_bench.api`). Methods differ in their step rule (``trpo_bench.methods.registry``):

* :func:`trpo_step`: CG on the analytic Fisher, step ``sqrt(2 delta / s'As) s``, backtracking
  until the surrogate improves and mean KL <= delta (the paper's TRPO);
* :func:`max_kl_step`: the same direction, the step sized for and the line search enforcing
  the max KL over states (eq. 11);
* :func:`empirical_fim_step`: the same with the empirical Fisher;
* :func:`natural_gradient_step`: a fixed step eps * A^-1 g, no line search (sec. 7);
* :func:`vpg_step`: one Adam step up the surrogate (vanilla policy gradient).

Every step rule (also ``trpo_bench.methods.rwr``'s and ``trpo_bench.methods.ppo``'s) ends in
:func:`guard_step`:
a step after which the parameters, the KL or the surrogate are not finite is rejected, the old
parameters kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from trpo_bench.api import Objective, StepRule, StepStats
from trpo_bench.config import TrainConfig
from trpo_bench.core.optim import (
    backtracking_line_search,
    conjugate_gradient_with_residual,
    empirical_fisher_vector_product,
    fisher_vector_product,
    max_step_length,
)
from trpo_bench.core.policies import Policy

__all__ = [  # Objective, StepStats and StepRule live in trpo_bench.api (the public contract)
    "Direction",
    "Objective",
    "StepRule",
    "StepStats",
    "apply_step",
    "empirical_fim_step",
    "guard_step",
    "max_kl_step",
    "natural_direction",
    "natural_gradient_step",
    "policy_adam",
    "restore",
    "snapshot",
    "trpo_step",
    "vpg_step",
]


def fvp_subsample_index(n: int, fraction: float, generator: torch.Generator) -> Tensor | None:
    """Indices of the states used for Fisher-vector products (the paper: 10% of the batch)."""
    k = max(1, round(n * fraction))
    if k >= n:
        return None
    return torch.randperm(n, generator=generator)[:k]


@dataclass
class Direction:
    """What :func:`natural_direction` found: the stats so far and, when the gradient is usable
    (``stats.reject_reason`` empty), g, s and ``(A + lambda I) s``; else those are None."""

    stats: StepStats
    g: Tensor | None = None
    s: Tensor | None = None
    as_: Tensor | None = None

    @property
    def usable(self) -> bool:
        return self.s is not None


def natural_direction(
    policy: Policy,
    objective: Objective,
    cfg: TrainConfig,
    generator: torch.Generator,
    fisher: str = "analytic",
) -> Direction:
    """Policy gradient g of the surrogate and the CG solution s of ``(A + lambda I) s = g``.

    ``fisher`` picks A: ``analytic`` (the Hessian of the mean KL, the paper's choice) or
    ``empirical`` (the mean outer product of score gradients, sec. 6; needs the objective's
    ``actions``). Both are formed on ``cfg.fvp_subsample`` of the states. When g is not usable
    the :class:`Direction` holds only the stats, with a ``reject_reason``.
    """
    params = policy.policy_parameters()
    surrogate, g = objective.surrogate_and_grad(policy, params)
    stats = StepStats(surrogate_before=surrogate)
    stats.grad_norm = float(g.norm())
    if not torch.isfinite(g).all() or not math.isfinite(stats.surrogate_before):
        stats.reject_reason = "non-finite surrogate or gradient"
        return Direction(stats)
    if stats.grad_norm == 0.0:
        stats.reject_reason = "zero gradient"
        return Direction(stats)
    index = fvp_subsample_index(objective.kl_obs.shape[0], cfg.fvp_subsample, generator)
    if fisher == "analytic":
        fvp = fisher_vector_product(
            lambda: objective.kl(policy, index).mean(), params, cfg.cg_damping
        )
    else:
        all_obs, actions, _ = objective.per_sample("the empirical Fisher")
        obs = all_obs if index is None else all_obs[index]
        acts = actions if index is None else actions[index]
        fvp = empirical_fisher_vector_product(policy, policy.log_prob, obs, acts, cfg.cg_damping)
    s, residual = conjugate_gradient_with_residual(fvp, g, cfg.cg_iters, cfg.cg_residual_tol)
    return Direction(stats, g, s, g - residual)


def trpo_step(
    policy: Policy,
    objective: Objective,
    cfg: TrainConfig,
    generator: torch.Generator,
    constraint: str = "mean",
    fisher: str = "analytic",
) -> StepStats:
    """One TRPO update (sec. 6, app. C).

    1. g = grad L(theta_old) (eq. 14); 2. s ~= A^-1 g by ``cfg.cg_iters`` CG iterations on
    Fisher-vector products over ``cfg.fvp_subsample`` of the states (``fisher``: the analytic
    KL Hessian, or the empirical Fisher); 3. beta = sqrt(2 delta / s'As); 4. backtrack from
    theta_old + beta s until ``L`` improves and the constraint (``mean`` KL, eq. 12, or ``max``
    KL over the batch's states, eq. 11) is <= delta; for ``max`` the first trial is beta s
    rescaled so that the max state's quadratic KL model is delta (:func:`_max_kl_full_step`).
    If no trial passes the old parameters are kept and ``step_accepted`` is False.
    """
    params = policy.policy_parameters()
    theta_old = snapshot(policy)
    found = natural_direction(policy, objective, cfg, generator, fisher)
    if not found.usable:
        return _rejected(found.stats, policy, objective)
    stats, g, s, as_ = found.stats, found.g, found.s, found.as_
    shs = float(s.dot(as_))  # s'As, with As = g - r from CG
    if not math.isfinite(shs) or shs <= 0:
        stats.reject_reason = f"s'As = {shs:.3g} <= 0 (Fisher not positive-definite)"
        return _rejected(stats, policy, objective)
    full_step = max_step_length(shs, cfg.delta) * s
    if constraint == "max":
        full_step = _max_kl_full_step(policy, objective, full_step, cfg.delta, stats)
    stats.expected_gain = float(g.dot(full_step))

    last: list[tuple[float, Tensor]] = []

    def evaluate() -> tuple[float, float]:
        surrogate, kl = objective.evaluate(policy)
        last[:] = [(surrogate, kl)]
        return surrogate, float(kl.mean() if constraint == "mean" else kl.max())

    result = backtracking_line_search(
        params,
        full_step.detach(),
        evaluate,
        stats.surrogate_before,
        cfg.delta,
        cfg.linesearch_backtracks,
        cfg.linesearch_shrink,
    )
    stats.linesearch_steps = result.steps
    stats.step_accepted = result.accepted
    stats.step_fraction = result.fraction
    if not result.accepted:
        stats.reject_reason = "no line-search trial improved the surrogate within the KL bound"
    # The line search's last evaluation was at the final parameters: no need to repeat it.
    return guard_step(
        _finish(stats, policy, objective, evaluated=last[0]), policy, objective, theta_old
    )


# Secant refinements of the max-KL step length, and the fraction of delta they aim at (a
# model that lands exactly on delta would fail the line search's test half the time by
# rounding, and a halving then loses three quarters of the KL): see _max_kl_full_step.
MAX_KL_RESCALES = 2
MAX_KL_TARGET = 0.98


@torch.no_grad()
def _max_kl_full_step(
    policy: Policy, objective: Objective, full_step: Tensor, delta: float, stats: StepStats
) -> Tensor:
    """Resize the mean-KL step ``beta s`` so that the quadratic model of the max KL is delta.

    ``beta = sqrt(2 delta / s'As)`` puts the *mean* KL at delta; the max over the batch's states
    is then many times delta (10-30x on InvertedPendulum), so halving from there lands anywhere
    in [delta / 4, delta] for the max and wastes up to half the step. Each state's KL is
    quadratic in the step length t to second order (``KL_n(t) ~ t^2 s'A_n s / 2``, zero value and
    slope at t = 0), so the model of the max state through its KL at the trial t gives
    ``t <- t sqrt(0.98 delta / max_n KL_n(t))``; two such secant steps, then the usual line search
    enforces max KL <= delta exactly. The factor is recorded as ``max_kl_step_scale``.
    """
    params = policy.policy_parameters()
    theta_old = parameters_to_vector(params).detach().clone()
    scale = 1.0
    for _ in range(MAX_KL_RESCALES):
        vector_to_parameters(theta_old + scale * full_step, params)
        kl_max = float(objective.kl(policy).max())
        if not math.isfinite(kl_max) or kl_max <= 0.0:
            break
        scale *= math.sqrt(MAX_KL_TARGET * delta / kl_max)
    vector_to_parameters(theta_old, params)
    stats.extra["max_kl_step_scale"] = scale
    return scale * full_step


def max_kl_step(
    policy: Policy, objective: Objective, cfg: TrainConfig, generator: torch.Generator
) -> StepStats:
    """TRPO's direction, sized for and line-searched on max_n KL <= delta (eq. 11)."""
    return trpo_step(policy, objective, cfg, generator, constraint="max")


def empirical_fim_step(
    policy: Policy, objective: Objective, cfg: TrainConfig, generator: torch.Generator
) -> StepStats:
    """TRPO with A the empirical Fisher (mean outer product of score gradients, sec. 6)."""
    return trpo_step(policy, objective, cfg, generator, fisher="empirical")


def natural_gradient_step(
    policy: Policy, objective: Objective, cfg: TrainConfig, generator: torch.Generator
) -> StepStats:
    """The natural policy gradient (sec. 7): theta += eps * A^-1 g with a fixed eps.

    A^-1 g by CG on the analytic Fisher, as TRPO; no line search and no KL enforcement: the
    KL actually taken is recorded. ``eps`` is ``cfg.step_size`` (the paper swept it in factors
    of 3 and kept the best).
    """
    theta_old = snapshot(policy)
    found = natural_direction(policy, objective, cfg, generator)
    if not found.usable:
        return _rejected(found.stats, policy, objective)
    stats, g, s = found.stats, found.g, found.s
    step = cfg.step_size * s
    if not torch.isfinite(step).all():
        stats.reject_reason = "non-finite natural gradient"
        return _rejected(stats, policy, objective)
    stats.expected_gain = float(g.dot(step))
    apply_step(policy, step)
    stats.step_accepted, stats.step_fraction = True, 1.0
    # The step is not limited, but one that leaves the KL (or anything) non-finite is undone.
    return guard_step(_finish(stats, policy, objective), policy, objective, theta_old)


def vpg_step(
    policy: Policy, objective: Objective, cfg: TrainConfig, generator: torch.Generator
) -> StepStats:
    """Vanilla policy gradient: one Adam step (``cfg.learning_rate``) up the surrogate.

    The floor every method should beat. The Adam state lives on the policy
    (``policy.optimizer``) so that checkpoints carry it.
    """
    del generator
    optimizer = policy_adam(policy, cfg)
    theta_old, adam_old = snapshot(policy), copy.deepcopy(optimizer.state_dict())
    surrogate = objective.surrogate(policy)
    stats = StepStats(surrogate_before=float(surrogate.detach()))
    optimizer.zero_grad()
    (-surrogate).backward()
    grads = [p.grad for p in policy.policy_parameters() if p.grad is not None]
    stats.grad_norm = float(torch.cat([g.reshape(-1) for g in grads]).norm())
    if not math.isfinite(stats.grad_norm):
        stats.reject_reason = "non-finite gradient"
        optimizer.zero_grad()
        return _rejected(stats, policy, objective)
    optimizer.step()
    stats.step_accepted, stats.step_fraction = True, 1.0
    stats = guard_step(_finish(stats, policy, objective), policy, objective, theta_old)
    if not stats.step_accepted:
        optimizer.load_state_dict(adam_old)  # Adam's moments as they were, too
    return stats


def policy_adam(
    policy: Policy, cfg: TrainConfig, eps: float = 1e-8, fused: bool = False
) -> torch.optim.Optimizer:
    """The policy's Adam optimizer for first-order steps (``cfg.learning_rate``, ``eps``;
    ``fused``: torch's fused kernel, fewer passes per step), created on first use. It lives on
    the policy, so checkpoints carry its moments, and a resumed run's loaded state restores its
    settings (eps, fused) too."""
    if policy.optimizer is None:
        kwargs = {"fused": True} if fused else {}
        policy.optimizer = torch.optim.Adam(
            policy.policy_parameters(), lr=cfg.learning_rate, eps=eps, **kwargs
        )
    return policy.optimizer


def _finish(
    stats: StepStats,
    policy: Policy,
    objective: Objective,
    evaluated: tuple[float, Tensor] | None = None,
) -> StepStats:
    surrogate, kl = evaluated if evaluated is not None else objective.evaluate(policy)
    stats.surrogate_after = surrogate
    stats.kl_mean, stats.kl_max = float(kl.mean()), float(kl.max())
    return stats


def _rejected(stats: StepStats, policy: Policy, objective: Objective) -> StepStats:
    stats.step_accepted = False
    return _finish(stats, policy, objective)


def snapshot(policy: Policy) -> Tensor:
    """The policy's parameters as one flat copy, for :func:`guard_step` to restore."""
    return parameters_to_vector(policy.policy_parameters()).detach().clone()


def restore(policy: Policy, theta_old: Tensor) -> None:
    """Put the :func:`snapshot` back, bit for bit, into the parameters' own storage."""
    with torch.no_grad():
        offset = 0
        for p in policy.policy_parameters():
            p.copy_(theta_old[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def non_finite(policy: Policy, values: dict[str, float]) -> str:
    """What is not finite: ``"parameters"``, or the names of the ``values`` that are not;
    ``""`` if all are."""
    if not all(bool(torch.isfinite(p).all()) for p in policy.policy_parameters()):
        return "parameters"
    return ", ".join(name for name, v in values.items() if not math.isfinite(v))


def guard_step(
    stats: StepStats,
    policy: Policy,
    objective: Objective,
    theta_old: Tensor,
    values: dict[str, float] | None = None,
) -> StepStats:
    """The check every step rule ends with (issue 13): a step after which the parameters, the
    KL (mean or max) or the surrogate (and any further ``values``, a method's own loss) are not
    finite is rejected: ``theta_old`` is restored, ``step_accepted`` is False and
    ``reject_reason`` names what was not finite; the stats are then those of the old policy.
    A finite step is returned untouched."""
    checked = {
        "KL": stats.kl_mean,
        "max KL": stats.kl_max,
        "surrogate": stats.surrogate_after,
        **(values or {}),
    }
    bad = non_finite(policy, checked)
    if not bad:
        return stats
    restore(policy, theta_old)
    stats.step_accepted, stats.step_fraction = False, 0.0
    reason = f"non-finite {bad} after the step"
    stats.reject_reason = f"{stats.reject_reason}; {reason}" if stats.reject_reason else reason
    return _finish(stats, policy, objective)


def apply_step(policy: Policy, step: Tensor) -> None:
    """theta <- theta + step, in place."""
    params = policy.policy_parameters()
    vector_to_parameters(parameters_to_vector(params).detach() + step.detach(), params)
