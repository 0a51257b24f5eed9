"""Reward-weighted regression (Peters & Schaal 2007; episodic, Kober & Peters 2009), a step rule.

RWR is the paper's Figure 4 baseline that, like TRPO, learns from the samples of its own
stochastic policy; it is therefore a step rule bound to the single-path sampler
(``trpo_bench.methods.registry``: ``rwr`` = ``sample_single_path`` + :func:`rwr_step`), and runs in
the
shared training loop. Each iteration:

1. sample with the current policy (sec. 5.1): states ``s_n``, actions ``a_n`` and the discounted
   return-to-go ``Q_n`` that followed (standardised over the batch when
   ``normalize_advantages`` is on, so ``rwr_temperature`` is in units of its std);
2. weight every sampled action by its exponentiated return,
   ``w_n = exp(Q_n / rwr_temperature) / sum_m exp(Q_m / rwr_temperature)``;
3. refit the policy by weighted maximum likelihood,
   ``theta <- argmax_theta sum_n w_n log pi_theta(a_n | s_n)``, for the Gaussian policy its mean
   network and log-std together, by ``rwr_fit_iters`` L-BFGS iterations from the current
   parameters.

There is no step-size control: the new policy is whatever the fit gives, the contrast with
TRPO's KL constraint that the paper draws. progress.csv still reports the surrogate (eq. 14)
and the KL of the change. A fit that leaves the parameters, the KL (a collapsed std makes it
infinite), the surrogate or the weighted log-likelihood non-finite is rejected and undone, as
every step rule's (``trpo_bench.methods.steps.guard_step``).

Registered as ``--method rwr``; run on its own with the command line of ``trpo-bench train``::

    python baselines/rwr.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-rwr
"""

from __future__ import annotations

import torch
from torch import Tensor

from trpo_bench.api import Objective, StepStats
from trpo_bench.config import TrainConfig
from trpo_bench.core.policies import Policy
from trpo_bench.methods.steps import guard_step, snapshot


def rwr_weights(returns: Tensor, temperature: float) -> Tensor:
    """``w_n = exp(Q_n / T) / sum_m exp(Q_m / T)`` (step 2), computed without overflow."""
    return torch.softmax(returns.double() / temperature, dim=0).to(returns.dtype)


def weighted_log_likelihood(
    policy: Policy, obs: Tensor, actions: Tensor, weights: Tensor
) -> Tensor:
    """``sum_n w_n log pi_theta(a_n | s_n)``, the objective of the refit (step 3)."""
    return (weights * policy.log_prob(policy.dist_params(obs), actions)).sum()


def rwr_step(
    policy: Policy, objective: Objective, cfg: TrainConfig, generator: torch.Generator
) -> StepStats:
    """One RWR update on single-path samples (module docstring, steps 2-3), in place."""
    obs, actions, returns = objective.per_sample("rwr_step")
    weights = rwr_weights(returns, cfg.rwr_temperature)
    params = policy.policy_parameters()
    theta_old = snapshot(policy)
    surrogate_before, _ = objective.evaluate(policy)
    with torch.no_grad():
        before = float(weighted_log_likelihood(policy, obs, actions, weights))
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=cfg.rwr_fit_iters, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -weighted_log_likelihood(policy, obs, actions, weights)
        loss.backward()
        return loss

    optimizer.step(closure)
    for p in params:
        p.grad = None
    surrogate_after, kl = objective.evaluate(policy)
    with torch.no_grad():
        after = float(weighted_log_likelihood(policy, obs, actions, weights))
    stats = StepStats(
        surrogate_before=surrogate_before,
        surrogate_after=surrogate_after,
        kl_mean=float(kl.mean()),
        kl_max=float(kl.max()),
        step_accepted=True,
        step_fraction=1.0,
        extra={
            "rwr_weight_ess": float(1.0 / weights.double().pow(2).sum()),
            "rwr_loglik_before": before,
            "rwr_loglik_after": after,
        },
    )
    return guard_step(stats, policy, objective, theta_old, {"weighted log-likelihood": after})
