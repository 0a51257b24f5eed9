"""Estimators of Q, advantages and the surrogate objective (sec. 5, eq. 14-16).

All functions here are pure: arrays in, arrays out, so tests can feed them hand-made numbers.
Time runs along axis 0 of every ``[T, N]`` array (N parallel environments).

End-of-episode rules (see :mod:`trpo_bench.envs.registry`):

* ``terminated[t]``: the episode ended at t; the return after t is 0;
* ``truncated[t]``: the episode was cut after t (time limit, or the end of the batch); the return
  after t is unknown and is estimated by ``bootstrap[t]`` (the value of the state it was cut in),
  or taken as 0 when no value function exists, which is what the paper's single path does at the
  end of a path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def discounted_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    bootstrap: np.ndarray | None = None,
) -> np.ndarray:
    """Discounted return-to-go ``Q-hat_t = sum_l gamma^l r_{t+l}`` along each path (sec. 5.1).

    The sum stops at a termination (nothing follows) and at a truncation, where
    ``bootstrap[t]`` (default 0) stands for the return after the cut.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.zeros_like(rewards)
    boot = np.zeros_like(rewards) if bootstrap is None else np.asarray(bootstrap, np.float64)
    ahead = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(rewards.shape[0] - 1, -1, -1):
        ahead = np.where(terminated[t], 0.0, np.where(truncated[t], boot[t], ahead))
        ahead = rewards[t] + gamma * ahead
        out[t] = ahead
    return out


def gae_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimation, GAE(lambda) (Schulman et al. 2016).

    ``delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``, ``done = terminated or truncated``.
    ``next_values[t]`` is V of the state after step t (for a truncated step, the state it was cut
    in). lam = 1 gives the discounted return minus V (bootstrapped at truncations); lam = 0 the
    one-step TD error.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    delta = rewards + gamma * np.where(terminated, 0.0, next_values) - values
    done = np.logical_or(terminated, truncated)
    adv = np.zeros_like(rewards)
    ahead = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(rewards.shape[0] - 1, -1, -1):
        ahead = delta[t] + gamma * lam * np.where(done[t], 0.0, ahead)
        adv[t] = ahead
    return adv


def standardize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Zero mean, unit variance (a constant baseline and scale)."""
    return (x - x.mean()) / (x.std() + eps)


def importance_sampled_surrogate(logp_new: Tensor, logp_q: Tensor, q_values: Tensor) -> Tensor:
    """Eq. 14: ``mean_n [ pi_theta(a_n|s_n) / q(a_n|s_n) * Q-hat_n ]``."""
    return (torch.exp(logp_new - logp_q) * q_values).mean()


def enumerated_surrogate(probs_new: Tensor, q_values: Tensor) -> Tensor:
    """Eq. 15 averaged over states: ``mean_n sum_k pi_theta(a_k|s_n) Q-hat(s_n, a_k)``.

    ``probs_new`` and ``q_values`` are ``[N, K]``: every action of a small discrete space.
    """
    return (probs_new * q_values).sum(-1).mean()


def self_normalized_surrogate(logp_new: Tensor, logp_old: Tensor, q_values: Tensor) -> Tensor:
    """Eq. 16 averaged over states: per state ``sum_k w_k Q_k / sum_k w_k``, ``w = pi/pi_old``.

    Inputs are ``[N, K]``: K sampled actions at each of N rollout-set states. The normalisation
    removes the need for a baseline (adding a constant to Q adds the same constant to L_n).
    """
    w = torch.exp(logp_new - logp_old)
    return ((w * q_values).sum(-1) / w.sum(-1)).mean()
