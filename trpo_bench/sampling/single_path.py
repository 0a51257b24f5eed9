"""Sampling (sec. 5): run the current policy and turn the data into a surrogate objective.

Single path (sec. 5.1): every iteration resets each env (seeded from the run's seed and the
iteration), runs the current policy pi_old over whole episodes, and stops after exactly
``steps_per_iter`` env steps. Q-hat is the discounted return-to-go along the path and the
sampling distribution is q = pi_old. With ``continue_episodes`` only the first iteration resets:
each later one goes on from the states the last batch was cut in (:class:`OpenEpisodes`, kept
with the env vector and in the checkpoint), as Atari PPO implementations sample; a batch then
holds the middles and ends of games, not only their first ``steps_per_iter / num_envs`` steps.

How episode ends are treated (see :mod:`trpo_bench.core.estimators`):

* a **termination** (the hopper fell) ends the sum: nothing follows;
* a **time-limit truncation** (gymnasium's ``TimeLimit``) and the **cut at the end of the batch**
  end the path early: with ``baseline: value`` the rest is bootstrapped with V of the state it
  was cut in; with ``baseline: none`` (the paper) the return is summed to the cut, as the paper's
  paths of fixed length did. Only episodes that ended (terminated or time-limited) count in
  ``return_mean``; the cut ones are incomplete.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trpo_bench.api import Batch, Objective
from trpo_bench.config import TrainConfig
from trpo_bench.core.estimators import (
    discounted_returns,
    gae_advantages,
    importance_sampled_surrogate,
    standardize,
)
from trpo_bench.core.optim import flat_grad
from trpo_bench.core.policies import DistParams, Policy, select_states
from trpo_bench.core.value import ValueFunction
from trpo_bench.envs.restore import snapshot_from_data, snapshot_to_data
from trpo_bench.envs.workers import AnyEnvVector


@dataclass
class OpenEpisodes:
    """The episodes a batch was cut in, carried to the next iteration (``continue_episodes``):
    each env's return and length so far. The envs' states are the env vector's own (its
    observations ``envs.obs``); :func:`open_episodes_state` saves both for a checkpoint."""

    returns: np.ndarray  # [N] float64
    lengths: np.ndarray  # [N] int64


@dataclass
class Rollout:
    """``[T, N]`` arrays of one iteration's samples; ``valid`` marks the slots really stepped."""

    obs: np.ndarray  # [T, N, obs_dim]
    actions: np.ndarray  # [T, N, act_dim] or [T, N]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray  # time limit or the cut at the end of the batch
    valid: np.ndarray
    final_obs: dict[tuple[int, int], np.ndarray]  # (t, i) -> state a truncated path was cut in
    episode_returns: list[float]
    episode_lengths: list[int]
    # pi_old's distribution as sampled from (pixel observations only): per-state parameters
    # ``[T, N, ...]``, a state-independent one (a Gaussian's log-std) as it was.
    dist: DistParams | None = None
    cut: OpenEpisodes | None = None  # the episodes the batch ended in (continue_episodes)

    @property
    def env_steps(self) -> int:
        return int(self.valid.sum())

    def flat(self, a: np.ndarray) -> np.ndarray:
        """The valid slots of a ``[T, N, ...]`` array in time-major order (a view, no copy,
        when every slot is valid: 100K Atari frames are not copied)."""
        merged = a.reshape(-1, *a.shape[2:])
        return merged if self.valid.all() else merged[self.valid.reshape(-1)]

    def flat_dist(self) -> DistParams:
        """:attr:`dist` at the valid slots in time-major order (as :meth:`flat`)."""
        assert self.dist is not None
        valid = None if self.valid.all() else torch.from_numpy(self.valid.reshape(-1))
        flat = []
        for t in self.dist:
            if t.dim() > 1:
                t = t.reshape(-1, *t.shape[2:])
                t = t if valid is None else t[valid.to(t.device)]
            flat.append(t)
        return tuple(flat)


def iteration_seeds(seed: int, iteration: int, n: int) -> tuple[list[int], int]:
    """Env reset seeds and a torch seed for one iteration, derived from (run seed, iteration).

    Deriving every iteration's randomness from its index makes a resumed run draw exactly what
    an uninterrupted one draws.
    """
    state = np.random.SeedSequence([seed, iteration]).generate_state(n + 1)
    return [int(s) for s in state[:n]], int(state[n])


def collect_paths(
    envs: AnyEnvVector,
    policy: Policy,
    steps: int,
    env_seeds: list[int],
    generator: torch.Generator,
    before_step: Callable[[int], None] | None = None,
    clip_rewards: bool = False,
    carry: OpenEpisodes | None = None,
) -> Rollout:
    """Run ``policy`` on all envs from fresh, seeded episodes for exactly ``steps`` env steps.

    One policy call per vector step (all envs at once); envs that end an episode are reset at
    once and go on. The last row steps only as many envs as the budget leaves. With ``carry``
    (the episodes the last batch was cut in) the envs are not reset: they go on from where they
    are, ``env_seeds`` unused; the rollout's ``cut`` is the next batch's ``carry``.
    ``before_step(n)``, if given, is called before each vector step with the number of envs
    about to step (vine snapshots the trunk's states there). ``clip_rewards`` trains on
    sign(r); the episode returns reported are always the raw rewards' sums.
    """
    n_envs = envs.num_envs
    horizon = math.ceil(steps / n_envs)
    obs_shape = envs.observation_space.shape
    act_shape = () if envs.discrete else envs.action_space.shape
    pixels = envs.obs.dtype == np.uint8  # Atari frames stay uint8 until the forward pass
    valid = (np.arange(horizon)[:, None] * n_envs + np.arange(n_envs)[None, :]) < steps
    # Every valid slot is written below; only the rest is zeroed (100K Atari frames are 830 MB,
    # which np.zeros would fault in page by page before the steps write them again).
    obs_buf = np.empty((horizon, n_envs, *obs_shape), dtype=np.uint8 if pixels else np.float32)
    obs_buf[~valid] = 0
    act_buf = np.zeros(
        (horizon, n_envs, *act_shape), dtype=np.int64 if envs.discrete else np.float32
    )
    rewards = np.zeros((horizon, n_envs))
    terminated = np.zeros((horizon, n_envs), dtype=bool)
    truncated = np.zeros((horizon, n_envs), dtype=bool)
    final_obs: dict[tuple[int, int], np.ndarray] = {}
    episode_returns: list[float] = []
    episode_lengths: list[int] = []
    dist_buf: list[Tensor] = []

    if carry is None:
        obs = envs.reset(env_seeds)
        ep_return = np.zeros(n_envs)
        ep_length = np.zeros(n_envs, dtype=np.int64)
    else:
        obs, ep_return, ep_length = envs.obs, carry.returns.copy(), carry.lengths.copy()
    device = policy.device  # the envs step on the CPU; the policy runs where its weights are
    with torch.no_grad():
        for t in range(horizon):
            n = min(n_envs, steps - t * n_envs)
            if before_step is not None:
                before_step(n)
            obs_buf[t, :n] = obs[:n]
            dist = policy.dist_params(torch.from_numpy(obs_buf[t, :n]).to(device))
            if pixels:  # kept for the objective (sample_single_path); cheap next to a frame
                if not dist_buf:  # per-state parameters get [T, N, ...] buffers; others a copy
                    dist_buf = [
                        p.new_zeros((horizon, n_envs, *p.shape[1:])) if p.dim() > 1 else p.clone()
                        for p in dist
                    ]
                for buf, p in zip(dist_buf, dist, strict=True):
                    if p.dim() > 1:
                        buf[t, :n] = p
            action = policy.sample(dist, generator).cpu().numpy()
            act_buf[t, :n] = action
            result = envs.step(action, n)
            rewards[t, :n] = np.sign(result.reward) if clip_rewards else result.reward
            terminated[t, :n] = result.terminated
            truncated[t, :n] = result.truncated
            ep_return[:n] += result.reward
            ep_length[:n] += 1
            for i, last in result.final_obs.items():
                if result.truncated[i]:
                    final_obs[(t, i)] = last
                episode_returns.append(float(ep_return[i]))
                episode_lengths.append(int(ep_length[i]))
                ep_return[i], ep_length[i] = 0.0, 0
            obs = result.next_obs

    # The batch ends mid-episode for every env still running: a truncation, not an episode end.
    for i in range(n_envs):
        t_last = int(np.flatnonzero(valid[:, i])[-1]) if valid[:, i].any() else -1
        if t_last >= 0 and not (terminated[t_last, i] or truncated[t_last, i]):
            truncated[t_last, i] = True
            final_obs[(t_last, i)] = obs[i].copy()
    return Rollout(
        obs_buf,
        act_buf,
        rewards,
        terminated,
        truncated,
        valid,
        final_obs,
        episode_returns,
        episode_lengths,
        tuple(dist_buf) if dist_buf else None,
        OpenEpisodes(ep_return, ep_length),
    )


def estimate_advantages(
    rollout: Rollout, cfg: TrainConfig, value_fn: ValueFunction | None
) -> tuple[np.ndarray, np.ndarray]:
    """Q-hat minus the baseline for each valid slot, and the value targets (``[T, N]`` each).

    baseline none: A = Q-hat (discounted return-to-go, sec. 5.1).
    baseline value: A = GAE(lambda) with V (lambda = 1: Q-hat bootstrapped at cuts, minus V).
    """
    if value_fn is None:
        q = discounted_returns(rollout.rewards, rollout.terminated, rollout.truncated, cfg.gamma)
        return np.where(rollout.valid, q, 0.0), q
    values = np.where(rollout.valid, value_fn.predict(rollout.obs), 0.0)
    next_values = np.zeros_like(values)
    next_values[:-1] = values[1:]
    for (t, i), last in rollout.final_obs.items():
        next_values[t, i] = value_fn.predict(last[None])[0]
    adv = gae_advantages(
        rollout.rewards,
        values,
        next_values,
        rollout.terminated,
        rollout.truncated,
        cfg.gamma,
        cfg.gae_lambda,
    )
    adv = np.where(rollout.valid, adv, 0.0)
    return adv, adv + values


class SinglePathObjective(Objective):
    """Eq. 14 on single-path data: ``mean_n pi_theta(a_n|s_n) / pi_old(a_n|s_n) * A_n``.

    Passes over the whole batch go ``chunk`` states at a time, so that memory stays bounded
    for pixel batches (100K Atari frames); the results equal one full-batch pass.

    ``old_dist``: pi_old's distribution at ``obs`` if the caller has it (the one the actions
    were sampled from, ``Rollout.dist``); otherwise one forward pass over the batch computes it.
    """

    def __init__(
        self,
        policy: Policy,
        obs: Tensor,
        actions: Tensor,
        advantages: Tensor,
        chunk: int = 1 << 30,
        old_dist: DistParams | None = None,
    ) -> None:
        self.kl_obs, self.actions, self.advantages = obs, actions, advantages
        self.chunk = chunk
        with torch.no_grad():
            if old_dist is None:
                dists = [policy.dist_params(obs[sl]) for sl in self._slices()]
                # Cloned, not viewed: a state-independent log-std is the parameter itself, and
                # pi_old must not move when the step changes the parameters in place.
                old_dist = tuple(
                    torch.cat(parts) if parts[0].dim() > 1 else parts[0].detach().clone()
                    for parts in zip(*dists, strict=True)
                )
            self.old_dist = old_dist
            self.logp_q = policy.log_prob(self.old_dist, actions)
            self.old_log_prob = self.logp_q  # the public name (trpo_bench.api.Objective)

    def _slices(self) -> list[slice]:
        n = self.kl_obs.shape[0]
        return [slice(i, min(i + self.chunk, n)) for i in range(0, n, self.chunk)]

    def surrogate(self, policy: Policy) -> Tensor:
        return self._surrogate(policy, policy.dist_params(self.kl_obs), slice(None))

    def _surrogate(self, policy: Policy, dist: tuple[Tensor, ...], sl: slice) -> Tensor:
        return importance_sampled_surrogate(
            policy.log_prob(dist, self.actions[sl]), self.logp_q[sl], self.advantages[sl]
        )

    def surrogate_and_grad(self, policy: Policy, params: list) -> tuple[float, Tensor]:
        slices = self._slices()
        if len(slices) == 1:
            return super().surrogate_and_grad(policy, params)
        n, total, grad = self.kl_obs.shape[0], 0.0, None
        for sl in slices:
            # The batch mean as a sum of chunk means weighted by their share of the batch.
            part = self._surrogate(policy, policy.dist_params(self.kl_obs[sl]), sl)
            part = part * ((sl.stop - sl.start) / n)
            g = flat_grad(part, params)
            total += float(part.detach())
            grad = g if grad is None else grad + g
        return total, grad

    @torch.no_grad()
    def evaluate(self, policy: Policy) -> tuple[float, Tensor]:
        n, total, kls = self.kl_obs.shape[0], 0.0, []
        for sl in self._slices():
            dist = policy.dist_params(self.kl_obs[sl])  # one forward for both
            total += float(self._surrogate(policy, dist, sl)) * (sl.stop - sl.start) / n
            kls.append(policy.kl(select_states(self.old_dist, sl), dist))
        return total, torch.cat(kls)


def sample_single_path(
    envs: AnyEnvVector,
    policy: Policy,
    cfg: TrainConfig,
    iteration: int,
    value_fn: ValueFunction | None,
    generator: torch.Generator,
) -> Batch:
    """Single path (sec. 5.1): collect paths, estimate advantages, fit V, build eq. 14 (with
    a value baseline, the value targets are the objective's ``returns``)."""
    env_seeds, _ = iteration_seeds(cfg.seed, iteration, envs.num_envs)
    carry = envs.open_episodes if cfg.continue_episodes else None
    rollout = collect_paths(
        envs,
        policy,
        cfg.steps_per_iter,
        env_seeds,
        generator,
        clip_rewards=cfg.clip_rewards,
        carry=carry,
    )
    if cfg.continue_episodes:
        envs.open_episodes = rollout.cut
    adv, targets = estimate_advantages(rollout, cfg, value_fn)
    flat = rollout.flat
    device = policy.device
    obs = torch.from_numpy(flat(rollout.obs)).to(device)
    actions = torch.from_numpy(flat(rollout.actions)).to(device)
    adv_flat = flat(adv)
    extra: dict[str, float] = {"advantage_mean": float(adv_flat.mean())}
    if cfg.normalize_advantages:
        adv_flat = standardize(adv_flat)
    target_t = None
    if value_fn is not None:
        target_t = torch.as_tensor(flat(targets), dtype=torch.float32, device=device)
        extra["value_loss"] = value_fn.fit(
            obs, target_t, cfg.vf_epochs, cfg.vf_minibatch, generator
        )
    # Pixels: pi_old as sampled, not a second forward pass over the batch (5% of an Atari
    # iteration; the same numbers up to float rounding, bit for bit on some CPUs at sampling
    # batches of 7 or more, see tests/test_atari.py). Vectors: the pass is cheap, and
    # recomputing keeps the float rounding of a full-batch pass (a batch of 2 rows rounds
    # differently).
    objective = SinglePathObjective(
        policy,
        obs,
        actions,
        torch.as_tensor(adv_flat, dtype=torch.float32, device=device),
        cfg.batch_chunk,
        old_dist=None if rollout.dist is None else rollout.flat_dist(),
    )
    objective.returns = target_t
    return Batch(
        objective, rollout.env_steps, rollout.episode_returns, rollout.episode_lengths, obs, extra
    )


def open_episodes_state(envs: AnyEnvVector) -> dict[str, Any] | None:
    """The envs' open episodes as checkpoint data (their full states, observations, returns and
    lengths so far), or None if the envs start each iteration afresh."""
    carry = envs.open_episodes
    if carry is None:
        return None
    snaps = envs.snapshot(range(envs.num_envs))
    return {
        "returns": carry.returns.copy(),
        "lengths": carry.lengths.copy(),
        "obs": envs.obs.copy(),
        "envs": [snapshot_to_data(s) for s in snaps],
    }


def restore_open_episodes(envs: AnyEnvVector, state: dict[str, Any]) -> None:
    """Put the envs back into the open episodes :func:`open_episodes_state` saved."""
    envs.restore(range(envs.num_envs), [snapshot_from_data(d) for d in state["envs"]])
    envs.obs[:] = state["obs"]
    envs.open_episodes = OpenEpisodes(state["returns"].copy(), state["lengths"].copy())
