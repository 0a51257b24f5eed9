"""Proximal policy optimization, clipped version (Schulman et al. 2017, arXiv 1707.06347).

Written against the public method API (:mod:`trpo_bench.api`) only: ``ppo`` binds the
single-path sampler (``trpo_bench.sampling.single_path.sample_single_path``; with ``baseline:
value`` it
computes GAE(lambda) advantages with the value net and fits the net on the batch) to
:func:`ppo_step`. Each iteration, on the ``[n]`` samples of the objective (``kl_obs``,
``actions``, ``advantages``, ``old_log_prob``):

1. for ``ppo_epochs`` epochs, over minibatches of ``ppo_minibatch`` samples in a random order
   (the iteration's generator): standardise the minibatch's advantages (when
   ``normalize_advantages``), form the ratio ``r_n = pi_theta(a_n|s_n) / pi_old(a_n|s_n)`` and
   the clipped surrogate (the PPO paper's eq. 7)
   ``L^CLIP = mean_n min(r_n A_n, clip(r_n, 1 - clip_range, 1 + clip_range) A_n)``;
2. take one Adam step (``learning_rate``, eps 1e-5; torch's fused kernel) up ``L^CLIP`` after
   clipping the gradient's norm to ``max_grad_norm``.

It is TRPO's surrogate (eq. 14 of the TRPO paper, ``r_n A_n``) with the KL constraint replaced
by the clip and first-order steps. progress.csv reports the eq. 14 surrogate before and after
and the KL of the change like every method, plus ``ppo_clip_fraction`` (share of samples whose
ratio was clipped in the last epoch) and ``ppo_loss`` (the last minibatch's loss).

**Defaults** (``presets/methods.yaml``): Stable-Baselines3's PPO defaults (v2.7,
``stable_baselines3/ppo/ppo.py``): lr 3e-4, 2048 steps per update on one env, 10 epochs,
minibatch 64, clip 0.2, gamma 0.99, GAE lambda 0.95, advantage normalisation per minibatch,
gradient-norm clip 0.5, no entropy bonus, [64, 64] tanh networks, the value function a
separate network. Departures, stated: the value net is fitted by the sampler before the policy
epochs (its own Adam, torch's fused kernel as the policy's, lr 3e-4, 10 epochs of minibatch 64,
to the same GAE returns) where SB3 sums both losses (``vf_coef`` 0.5) in one Adam and clips
their joint gradient norm; here the norm clip is on the policy's gradient alone (with separate
networks and Adam's per-parameter steps the two fits differ only through that joint clip, the
value loss's share in Adam's ``eps`` and the interleaving); the policy keeps this suite's
initialisation (not SB3's orthogonal one); observations are normalised (as ``trpo-gae``, after
rl-zoo's MuJoCo runs); the learning rate is constant (SB3's default; CleanRL anneals it).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from trpo_bench.api import ConfigKey, Objective, StepStats
from trpo_bench.config import TrainConfig
from trpo_bench.core.adam import FusedAdamSteps
from trpo_bench.core.estimators import standardize
from trpo_bench.core.policies import Policy
from trpo_bench.methods.steps import guard_step, policy_adam, snapshot

__all__ = ["ADAM_EPS", "CONFIG_KEYS", "clipped_surrogate", "ppo_step"]

ADAM_EPS = 1e-5  # SB3's (and CleanRL's) Adam eps for PPO

CONFIG_KEYS = (
    ConfigKey(
        "clip_range",
        0.2,
        "PPO: the ratio pi_theta / pi_old is clipped to [1 - clip_range, 1 + clip_range] in "
        "the surrogate. SB3 / CleanRL: 0.2.",
        {"min_exclusive": 0.0, "max_exclusive": 1.0},
    ),
    ConfigKey("ppo_epochs", 10, "PPO: passes over the batch per iteration.", {"min": 1}),
    ConfigKey("ppo_minibatch", 64, "PPO: samples per Adam step (SB3's batch_size).", {"min": 1}),
    ConfigKey(
        "max_grad_norm",
        0.5,
        "PPO: the policy gradient's norm is clipped to this before each Adam step (0: no clip).",
        {"min": 0.0},
    ),
)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_range: float) -> Tensor:
    """Per-sample ``min(r A, clip(r, 1 - eps, 1 + eps) A)`` (PPO paper, eq. 7)."""
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.minimum(ratio * advantages, clipped * advantages)


def minibatch_advantages(advantages: Tensor, normalize: bool) -> Tensor:
    """A minibatch's advantages, standardised over it (SB3, CleanRL) when ``normalize`` and it
    holds more than one sample."""
    if not normalize or advantages.numel() < 2:
        return advantages
    return standardize(advantages)


def epoch_advantages(advantages: Tensor, minibatch: int, normalize: bool) -> Tensor:
    """An epoch's advantages (in its order) with each minibatch of ``minibatch`` consecutive
    samples passed through :func:`minibatch_advantages`: the same numbers, the full minibatches
    standardised together as the rows of one matrix (a few ops instead of a few per minibatch).
    """
    if not normalize:
        return advantages
    full = advantages.shape[0] // minibatch * minibatch
    rows = advantages[:full].reshape(-1, minibatch)
    if minibatch >= 2 and full > 0:  # as standardize, row by row
        rows = (rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + 1e-8)
    rest = minibatch_advantages(advantages[full:], normalize)
    return torch.cat([rows.reshape(-1), rest])


def clip_grad_norm(grads: list[Tensor], max_norm: float) -> Tensor:
    """``torch.nn.utils.clip_grad_norm_`` on the gradients themselves (its very operations, for
    one device and dtype, without its per-call bookkeeping): scales them in place to a total
    2-norm of at most ``max_norm`` and returns the norm before."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def ppo_step(
    policy: Policy, objective: Objective, cfg: TrainConfig, generator: torch.Generator
) -> StepStats:
    """One PPO update: ``ppo_epochs`` epochs of minibatch Adam steps on L^CLIP (module doc)."""
    obs, actions, advantages = objective.per_sample("ppo_step")
    old_log_prob = objective.old_log_prob
    assert old_log_prob is not None  # set with actions (trpo_bench.api.Objective)
    optimizer = policy_adam(policy, cfg, eps=ADAM_EPS, fused=True)
    params, adam = policy.policy_parameters(), FusedAdamSteps(optimizer)
    theta_old, adam_old = snapshot(policy), copy.deepcopy(optimizer.state_dict())
    surrogate_before, _ = objective.evaluate(policy)
    stats = StepStats(surrogate_before=surrogate_before)
    n = obs.shape[0]
    loss_value, grad_norms, clipped, seen = math.nan, [], 0, 0
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
    for epoch in range(cfg.ppo_epochs):
        # One gather per epoch; the minibatches are then contiguous slices (views).
        order = torch.randperm(n, generator=generator)
        e_obs, e_act, e_logp = obs[order], actions[order], old_log_prob[order]
        e_adv = epoch_advantages(advantages[order], cfg.ppo_minibatch, cfg.normalize_advantages)
        last_epoch = epoch == cfg.ppo_epochs - 1
        for start in range(0, n, cfg.ppo_minibatch):
            mb = slice(start, start + cfg.ppo_minibatch)
            logp = policy.log_prob(policy.dist_params(e_obs[mb]), e_act[mb])
            ratio = torch.exp(logp - e_logp[mb])
            loss = -clipped_surrogate(ratio, e_adv[mb], cfg.clip_range).mean()
            for p in params:  # optimizer.zero_grad() (set_to_none), without its overhead
                p.grad = None
            loss.backward()
            # max_norm inf: the norm is measured, nothing is scaled.
            grads = [p.grad for p in params if p.grad is not None]
            grad_norms.append(float(clip_grad_norm(grads, max_norm)))
            adam.step()  # optimizer.step(), the fused kernel called directly
            if last_epoch:
                loss_value = float(loss.detach())
                with torch.no_grad():
                    clipped += int(((ratio - 1.0).abs() > cfg.clip_range).sum())
                    seen += ratio.numel()
    optimizer.zero_grad()
    stats.grad_norm = float(sum(grad_norms) / len(grad_norms))
    stats.step_accepted, stats.step_fraction = True, 1.0
    stats.extra = {"ppo_clip_fraction": clipped / max(seen, 1), "ppo_loss": loss_value}
    surrogate_after, kl = objective.evaluate(policy)
    stats.surrogate_after = surrogate_after
    stats.kl_mean, stats.kl_max = float(kl.mean()), float(kl.max())
    stats = guard_step(stats, policy, objective, theta_old, {"PPO loss": loss_value})
    if not stats.step_accepted:
        optimizer.load_state_dict(adam_old)  # Adam's moments as they were, too
    return stats
