"""One yardstick for every method: the current policy evaluated on fixed episodes.

The return a gradient method reports while it trains (``return_mean``) is that of the
stochastic policy that sampled the batch; a derivative-free search reports its search mean
acting deterministically. The two are not the same measurement. The evaluation protocol puts
every method on the same footing:

* every ``eval_every`` iterations, and after the last, the policy as it stands after that
  iteration's update runs ``eval_episodes`` whole episodes, one per env, reset with the fixed
  seeds :data:`EVAL_SEED` + k (the same start states for every run, method and iteration);
* **deterministic**: the mean action (Gaussian) or the most likely one (categorical); and, for
  a policy that is stochastic (the gradient methods), **sampled** from a generator seeded by
  the iteration, so the sampled return is reproducible too;
* these episodes are not counted in ``env_steps`` (the sample budget) and do not touch the
  training's random streams, so a run with evaluation trains exactly as one without.

**Forward progress** (the paper's measure for claim 2, sec. 8.1: a "hopping or walking gait
that made forward progress"): for the locomotion tasks gymnasium's v5 envs report the reward
terms in ``info``. Each episode's sum of ``reward_forward`` (forward velocity, the term the
alive bonus cannot buy) and its ``x_position`` travelled are recorded; NaN where an env has no
such terms (cart-pole, Atari).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trpo_bench.core.policies import Policy
from trpo_bench.envs.registry import EnvVector

EVAL_SEED = 1_000_000_007
"""Episode k of every evaluation resets with seed ``EVAL_SEED + k``; sampled actions draw from
a generator seeded ``EVAL_SEED + iteration``. Far from the training seeds, which derive from
``numpy.random.SeedSequence([seed, iteration])``."""

Actor = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of observations ``[n, ...]`` to a batch of actions ``[n, ...]``."""


@dataclass
class EpisodeBatch:
    """Returns, lengths and forward progress of one batch of whole episodes (one per env)."""

    returns: np.ndarray
    lengths: np.ndarray
    forward_reward: np.ndarray  # sum of info["reward_forward"]; NaN where the env has none
    x_distance: np.ndarray  # x_position at the end minus at the reset; NaN where none


def run_episodes(envs: EnvVector, act: Actor, seeds: Sequence[int]) -> EpisodeBatch:
    """Run one whole episode on each env of ``envs`` (reset with ``seeds``), all stepped
    together with one ``act`` call per step, until every episode has ended (terminated or
    time-limited). Actions are clipped to the action space, as in training."""
    n = envs.num_envs
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    forward = np.zeros(n)
    has_forward = np.zeros(n, dtype=bool)
    x_start = np.full(n, math.nan)
    x_end = np.full(n, math.nan)
    obs = np.zeros((n, *envs.observation_space.shape), dtype=envs.obs.dtype)
    for i, (env, seed) in enumerate(zip(envs.envs, seeds, strict=True)):
        obs[i], info = env.reset(seed=int(seed))
        x_start[i] = x_end[i] = info.get("x_position", math.nan)
    running = np.ones(n, dtype=bool)
    while running.any():
        idx = np.flatnonzero(running)
        actions = act(obs[idx])
        if not envs.discrete:
            actions = np.clip(actions, envs._low, envs._high)
        for j, i in enumerate(idx):
            o, r, terminated, truncated, info = envs.envs[i].step(actions[j])
            returns[i] += r
            lengths[i] += 1
            if "reward_forward" in info:
                forward[i] += info["reward_forward"]
                has_forward[i] = True
            x_end[i] = info.get("x_position", x_end[i])
            obs[i] = o
            if terminated or truncated:
                running[i] = False
    return EpisodeBatch(returns, lengths, np.where(has_forward, forward, math.nan), x_end - x_start)


def policy_actor(
    policy: Policy, deterministic: bool, generator: torch.Generator | None = None
) -> Actor:
    """The policy's actions: the mode if ``deterministic``, else sampled with ``generator``."""

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(obs) if obs.dtype == np.uint8 else torch.from_numpy(obs).float()
        dist = policy.dist_params(x.to(policy.device))
        action = policy.mode(dist) if deterministic else policy.sample(dist, generator)
        return action.cpu().numpy()

    return act


def _columns(prefix: str, batch: EpisodeBatch) -> dict[str, float]:
    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if np.isfinite(x).all() else math.nan

    return {
        f"{prefix}_return_mean": mean(batch.returns),
        f"{prefix}_return_std": float(np.std(batch.returns)),
        f"{prefix}_forward_reward_mean": mean(batch.forward_reward),
        f"{prefix}_x_distance_mean": mean(batch.x_distance),
        f"{prefix}_episode_length_mean": float(np.mean(batch.lengths)),
    }


def is_due(iteration: int, iterations: int, every: int) -> bool:
    """Whether iteration ``iteration`` (0-based) ends with an evaluation: every ``every``
    iterations and after the last (``every`` 0: after the last only)."""
    last = iteration == iterations - 1
    return last or (every > 0 and (iteration + 1) % every == 0)


class PolicyEvaluator:
    """Evaluates a run's policy on the fixed episodes; owns ``episodes`` envs built once."""

    def __init__(self, env_id: str, episodes: int, options: Mapping[str, Any] | None) -> None:
        self.envs = EnvVector(env_id, episodes, options)
        self.seeds = [EVAL_SEED + k for k in range(episodes)]

    def __call__(self, policy: Policy, iteration: int, sampled: bool = True) -> dict[str, float]:
        """progress.csv's evaluation columns: ``eval_*`` (deterministic actions) and, if
        ``sampled``, ``eval_sampled_*`` (actions drawn from the policy); NaN otherwise. Its cost
        is ``eval_env_steps`` (not part of ``env_steps``) and ``eval_protocol_time_s``."""
        start = time.perf_counter()
        det = run_episodes(self.envs, policy_actor(policy, deterministic=True), self.seeds)
        row = _columns("eval", det)
        if sampled:
            generator = torch.Generator().manual_seed(EVAL_SEED + iteration)
            stoch = run_episodes(self.envs, policy_actor(policy, False, generator), self.seeds)
            row.update(_columns("eval_sampled", stoch))
        else:
            row.update({k.replace("eval_", "eval_sampled_", 1): math.nan for k in row})
        row["eval_env_steps"] = int(det.lengths.sum() + (stoch.lengths.sum() if sampled else 0))
        row["eval_protocol_time_s"] = round(time.perf_counter() - start, 3)
        return row

    def close(self) -> None:
        self.envs.close()
