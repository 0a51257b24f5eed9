"""Vine sampling (sec. 5.2): branched rollouts from a rollout set, with common random numbers.

One iteration, with K = ``vine_branches_per_state`` and H = ``vine_branch_length``:

1. **Trunks**: the ``num_envs`` envs run the current policy pi_old from fresh, seeded episodes
   (as single path does, ``sampling.collect_paths``); every trunk state is snapshotted
   (:mod:`trpo_bench.envs.restore`). The finished trunk episodes are the iteration's reported
   returns.
2. **Rollout set**: states s_n drawn uniformly, without replacement, from the trunk states.
3. **Actions** a_{n,k} ~ q(.|s_n): q = pi_old for continuous actions (K draws); a discrete space of
   at most K actions is enumerated (every action once, eq. 15); a larger one draws K actions
   uniformly (q uniform, the paper's choice for Atari).
4. **Branches**: from each (s_n, a_k) the env is restored to s_n, takes a_k, then follows pi_old
   for up to H steps in all. The K branches of a state share one random-number sequence: the
   same policy noise at each step (``Policy.sample_from_noise``) and the same env randomness
   (the env's RNG is part of the snapshot): common random numbers. They also step in lockstep,
   so their policy calls see the same batch. Q-hat(s_n, a_k) = sum_t gamma^t r_t over the
   branch; a termination or the env's time limit ends the sum (no bootstrap, as the paper's
   fixed-length rollouts).
5. **Surrogate** over the rollout set: eq. 15 (enumerated) or the self-normalised eq. 16
   (``w = pi_theta / q``); the KL constraint is measured at the rollout-set states; the step is
   the same as single path's (``steps.trpo_step``). Q-hat is centred per state before use: this
   shifts each L_n by a constant (``sum_k pi_theta(a_k) = 1`` in eq. 15, self-normalisation in
   eq. 16), so gradient and line search are unchanged, and keeps the float32 surrogate precise.

**Budget.** Every simulated step counts in ``env_steps`` (trunks and branches), which equals
``steps_per_iter`` (B) exactly unless branches end early. The branch budget is ``N * K * H``
with ``N = floor((B - ceil(vine_trunk_share * B)) / (K H))``; the trunks get the rest (at least
the share, plus the remainder). Steps a branch does not use (its episode ended before H) go
back to the branch budget and buy further rollout-set states while at least K * H are left, so
``env_steps`` ends less than K * H short of B at worst (or sooner if the trunk states run out).
The states are started in a random order and each state's random numbers are drawn from the
iteration's generator when it starts, so the same states get the same numbers however the
branches are batched (the batch size can still move float results in the last bits).

**Speed.** All branches in flight step as one vector of envs (a pool of
``vine_batch_branches`` envs, built once per run and reused) with one policy call per step;
finished branches free their slots for the next states at once.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from trpo_bench.api import Batch, Objective
from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.core.estimators import enumerated_surrogate, self_normalized_surrogate, standardize
from trpo_bench.core.policies import DistParams, Policy, select_states
from trpo_bench.core.value import ValueFunction
from trpo_bench.envs.registry import restore_problem_of
from trpo_bench.envs.restore import EnvSnapshot
from trpo_bench.envs.workers import AnyEnvVector, make_env_vector
from trpo_bench.sampling.single_path import collect_paths, iteration_seeds


@dataclass(frozen=True)
class VinePlan:
    """How one iteration's ``steps_per_iter`` splits into trunks and branches."""

    branches_per_state: int  # K (the number of actions when they are enumerated)
    branch_length: int  # H
    trunk_steps: int
    branch_budget: int  # N * K * H
    proposal: str  # q: "enumerated" (eq. 15), "pi_old" or "uniform" (eq. 16)

    @property
    def states(self) -> int:
        """N, the rollout-set states the branch budget buys if no branch ends early."""
        return self.branch_budget // (self.branches_per_state * self.branch_length)


def vine_plan(cfg: TrainConfig, action_space: gym.Space | None = None) -> VinePlan:
    """Split the budget (see the module docstring); ``action_space`` None: plan with K as
    configured (an upper bound on the enumerated count). Raises a ConfigError if the budget
    buys no rollout-set state."""
    k, h, budget = cfg.vine_branches_per_state, cfg.vine_branch_length, cfg.steps_per_iter
    proposal = "pi_old"
    if isinstance(action_space, gym.spaces.Discrete):
        n_actions = int(action_space.n)
        proposal = "enumerated" if n_actions <= k else "uniform"
        k = n_actions if n_actions <= k else k
    least_trunk = math.ceil(cfg.vine_trunk_share * budget)
    states = (budget - least_trunk) // (k * h)
    if states < 1:
        need = math.ceil(k * h / (1.0 - cfg.vine_trunk_share))
        raise ConfigError(
            f"trpo-vine: steps_per_iter {budget} buys no rollout-set state: after the trunk share "
            f"vine_trunk_share={cfg.vine_trunk_share} one state's K x H = {k} x {h} branch steps "
            f"need steps_per_iter >= {need} (allowed: raise steps_per_iter, or lower "
            "vine_trunk_share, vine_branches_per_state or vine_branch_length)"
        )
    return VinePlan(k, h, budget - states * k * h, states * k * h, proposal)


def check_vine_config(cfg: TrainConfig) -> None:
    """The vine method's constraints on a resolved config (run by ``build_config``)."""
    if cfg.baseline != "none":
        raise ConfigError(
            f"config key 'baseline': {cfg.baseline!r} is not allowed with trpo-vine "
            "(allowed: none; eq. 15 and the self-normalised eq. 16 need no baseline)"
        )
    problem = restore_problem_of(cfg.env)
    if problem is not None:
        raise ConfigError(
            f"trpo-vine needs to restore {cfg.env}'s envs exactly to branch from a state, and "
            f"{problem}; every other method runs on it"
        )
    vine_plan(cfg)


@dataclass
class BranchSpec:
    """The K branches from one rollout-set state: where, which first actions, which noise."""

    snapshot: EnvSnapshot
    actions: np.ndarray  # [K, *action_shape]: a_k, the branches' first actions
    noise: Tensor  # [H - 1, *noise_shape]: the policy noise of steps 1..H-1, shared by the K


@dataclass
class BranchResults:
    q_hat: np.ndarray  # [N, K] discounted branch returns, N = states run
    steps: int  # env steps simulated


def run_branches(
    pool: AnyEnvVector,
    policy: Policy,
    specs: Iterable[BranchSpec],
    branches_per_state: int,
    branch_length: int,
    gamma: float,
    budget: int | None = None,
    clip_rewards: bool = False,
) -> BranchResults:
    """Run the branches of the states in ``specs``, in order, on the envs of ``pool``.

    A state is started when K slots of the pool are free and (if ``budget`` is given) at least
    K * H steps of the budget are not reserved by running branches; a branch returns the steps
    it did not use when it ends. ``specs`` is consumed lazily: only the states run are drawn.
    All running branches step together, one policy call per vector step; a state's K branches
    start together, so they stay in lockstep.
    """
    k, h = branches_per_state, branch_length
    size = pool.num_envs
    if size < k:
        raise ValueError(f"a pool of {size} envs cannot hold {k} branches per state")
    spec_iter: Iterator[BranchSpec] = iter(specs)
    free_slots = list(range(size - 1, -1, -1))
    slot_state = np.full(size, -1)
    slot_k = np.zeros(size, dtype=np.int64)
    slot_t = np.zeros(size, dtype=np.int64)
    slot_q = np.zeros(size)
    slot_disc = np.ones(size)
    act_shape = () if pool.discrete else pool.action_space.shape
    act_dtype = np.int64 if pool.discrete else np.float32
    slot_first = np.zeros((size, *act_shape), dtype=act_dtype)
    slot_noise: Tensor | None = None
    q_hat: list[np.ndarray] = []
    steps = 0
    free_budget = budget
    exhausted = False
    with torch.no_grad():
        while True:
            # Start states while slots and budget allow.
            while (
                not exhausted
                and len(free_slots) >= k
                and (free_budget is None or free_budget >= k * h)
            ):
                spec = next(spec_iter, None)
                if spec is None:
                    exhausted = True
                    break
                if slot_noise is None:
                    slot_noise = torch.zeros((size, *spec.noise.shape), dtype=spec.noise.dtype)
                n = len(q_hat)
                q_hat.append(np.zeros(k))
                if free_budget is not None:
                    free_budget -= k * h
                slots = [free_slots.pop() for _ in range(k)]
                pool.restore(slots, [spec.snapshot] * k)  # in the worker that owns each slot
                for j, slot in enumerate(slots):
                    slot_state[slot], slot_k[slot], slot_t[slot] = n, j, 0
                    slot_q[slot], slot_disc[slot] = 0.0, 1.0
                    slot_first[slot] = spec.actions[j]
                    slot_noise[slot] = spec.noise
            active = np.flatnonzero(slot_state >= 0)
            if active.size == 0:
                break
            # a_k on a branch's first step; pi_old with the state's shared noise after that.
            actions = np.empty((active.size, *act_shape), dtype=act_dtype)
            first = slot_t[active] == 0
            actions[first] = slot_first[active[first]]
            later = active[~first]
            if later.size:
                obs = pool.obs[later]  # pixels stay uint8, as in the trunks
                obs = torch.from_numpy(obs if obs.dtype == np.uint8 else obs.astype(np.float32))
                assert slot_noise is not None
                noise = slot_noise[torch.from_numpy(later), torch.from_numpy(slot_t[later] - 1)]
                dist = policy.dist_params(obs.to(policy.device))
                actions[~first] = policy.sample_from_noise(dist, noise).cpu().numpy()
            result = pool.step_subset(actions, active)
            reward = np.sign(result.reward) if clip_rewards else result.reward  # Atari option
            slot_q[active] += slot_disc[active] * reward
            slot_disc[active] *= gamma
            slot_t[active] += 1
            ended = result.terminated | result.truncated | (slot_t[active] >= h)
            for slot in active[ended]:
                q_hat[slot_state[slot]][slot_k[slot]] = slot_q[slot]
                steps += int(slot_t[slot])
                if free_budget is not None:
                    free_budget += h - int(slot_t[slot])
                slot_state[slot] = -1
                free_slots.append(int(slot))
    q = np.stack(q_hat) if q_hat else np.zeros((0, k))
    return BranchResults(q, steps)


class VineObjective(Objective):
    """The vine surrogate over the rollout set (sec. 5.2).

    ``proposal`` "enumerated": eq. 15, ``mean_n sum_k pi_theta(a_k|s_n) Q_nk`` over every action;
    "pi_old" / "uniform": eq. 16, ``mean_n sum_k w_nk Q_nk / sum_k w_nk`` with
    ``w = pi_theta(a_nk|s_n) / q(a_nk|s_n)``. ``branch_actions`` is ``[N, K, ...]`` and
    ``q_values`` ``[N, K]`` (as used: centred per state); ``q_hat`` keeps the raw estimates.
    """

    q_hat: np.ndarray | None = None

    def __init__(
        self,
        policy: Policy,
        obs: Tensor,
        branch_actions: Tensor,
        q_values: Tensor,
        proposal: str,
        num_actions: int | None = None,
    ) -> None:
        self.kl_obs, self.branch_actions, self.q_values = obs, branch_actions, q_values
        self.proposal = proposal
        with torch.no_grad():
            # Cloned: a state-independent log-std is the parameter itself (see sampling.py).
            self.old_dist = tuple(t.detach().clone() for t in policy.dist_params(obs))
            if proposal == "pi_old":
                self.logp_q = self._log_prob(policy, self.old_dist)
            elif proposal == "uniform":
                assert num_actions is not None
                self.logp_q = torch.full(
                    q_values.shape, -math.log(num_actions), device=q_values.device
                )

    def _log_prob(self, policy: Policy, dist: DistParams) -> Tensor:
        """``log pi(a_nk | s_n)``, ``[N, K]``: each state's parameters repeated over its K."""
        k = self.branch_actions.shape[1]
        per_branch = tuple(
            t.unsqueeze(1).expand(-1, k, *t.shape[1:]) if t.dim() > 1 else t for t in dist
        )
        return policy.log_prob(per_branch, self.branch_actions)

    def _surrogate(self, policy: Policy, dist: DistParams) -> Tensor:
        logp = self._log_prob(policy, dist)
        if self.proposal == "enumerated":
            return enumerated_surrogate(torch.exp(logp), self.q_values)
        return self_normalized_surrogate(logp, self.logp_q, self.q_values)

    def surrogate(self, policy: Policy) -> Tensor:
        return self._surrogate(policy, policy.dist_params(self.kl_obs))

    @torch.no_grad()
    def evaluate(self, policy: Policy) -> tuple[float, Tensor]:
        dist = policy.dist_params(self.kl_obs)  # one forward for both
        return float(self._surrogate(policy, dist)), policy.kl(self.old_dist, dist)


# The branch pools, one per run's trunk vector; built once and reused every iteration.
_POOLS: weakref.WeakKeyDictionary[AnyEnvVector, AnyEnvVector] = weakref.WeakKeyDictionary()


def branch_pool(envs: AnyEnvVector, size: int) -> AnyEnvVector:
    """The vector of ``size`` envs that branches of ``envs``' states run on (cached), in as
    many env workers as ``envs`` has; it closes with ``envs``."""
    pool = _POOLS.get(envs)
    if pool is None or pool.num_envs != size:
        if pool is not None:
            pool.close()
            envs.companions.remove(pool)
        pool = make_env_vector(envs.env_id, size, envs.options, envs.workers)
        _POOLS[envs] = pool
        envs.companions.append(pool)
    return pool


def sample_vine(
    envs: AnyEnvVector,
    policy: Policy,
    cfg: TrainConfig,
    iteration: int,
    value_fn: ValueFunction | None,
    generator: torch.Generator,
) -> Batch:
    """Vine (sec. 5.2): trunks, rollout set, K branches per state with common random numbers,
    and the eq. 15 / 16 surrogate. ``env_steps`` counts trunks and branches (module docstring).
    """
    del value_fn  # eq. 15 / 16 need no baseline (check_vine_config refuses baseline: value)
    plan = vine_plan(cfg, envs.action_space)
    k, h = plan.branches_per_state, plan.branch_length

    # 1. Trunks, every state snapshotted (row-major, as the rollout's valid slots).
    snaps: list[EnvSnapshot] = []
    env_seeds, _ = iteration_seeds(cfg.seed, iteration, envs.num_envs)
    rollout = collect_paths(
        envs,
        policy,
        plan.trunk_steps,
        env_seeds,
        generator,
        before_step=lambda n: snaps.extend(envs.snapshot(range(n))),
        clip_rewards=cfg.clip_rewards,
    )
    mask = rollout.valid.reshape(-1)
    trunk_obs = torch.from_numpy(rollout.obs.reshape(-1, *rollout.obs.shape[2:])[mask])
    trunk_obs = trunk_obs.to(policy.device)

    # 2-3. The rollout set in a random order, each state's actions and noise drawn when the
    # state is started (so the draws come in the same order however branches are batched).
    order = torch.randperm(len(snaps), generator=generator).tolist()
    trunk_dist: DistParams | None = None
    if plan.proposal == "pi_old":  # the others draw no action from the policy
        with torch.no_grad():
            trunk_dist = policy.dist_params(trunk_obs)
    all_actions = np.arange(k) if plan.proposal == "enumerated" else None
    chosen: list[int] = []
    chosen_actions: list[np.ndarray] = []

    def specs() -> Iterator[BranchSpec]:
        for index in order:
            if all_actions is not None:
                actions = all_actions
            elif plan.proposal == "uniform":
                actions = torch.randint(int(envs.action_space.n), (k,), generator=generator)
                actions = actions.numpy()
            else:
                assert trunk_dist is not None
                dist = select_states(trunk_dist, index)
                noise = policy.noise((k,), generator)
                actions = policy.sample_from_noise(dist, noise).cpu().numpy()
            chosen.append(index)
            chosen_actions.append(actions)
            yield BranchSpec(snaps[index], actions, policy.noise((h - 1,), generator))

    # 4. Branches, on a pool of envs reused across iterations.
    pool = branch_pool(envs, k * max(1, min(cfg.vine_batch_branches // k, plan.states)))
    branches = run_branches(
        pool,
        policy,
        specs(),
        k,
        h,
        cfg.gamma,
        budget=plan.branch_budget,
        clip_rewards=cfg.clip_rewards,
    )

    # 5. The surrogate over the rollout set.
    q_hat = branches.q_hat
    q = q_hat - q_hat.mean(axis=1, keepdims=True)  # per-state constant: see the module doc
    if cfg.normalize_advantages:
        q = standardize(q) if q.std() > 0 else q
    objective = VineObjective(
        policy,
        trunk_obs[chosen],
        torch.from_numpy(np.stack(chosen_actions)).to(policy.device),
        torch.as_tensor(q, dtype=torch.float32, device=policy.device),
        plan.proposal,
        int(envs.action_space.n) if envs.discrete else None,
    )
    objective.q_hat = q_hat  # the raw estimates, for inspection
    extra = {
        "vine_states": float(len(chosen)),
        "vine_q_values": float(q_hat.size),
        "vine_trunk_steps": float(rollout.env_steps),
        "vine_branch_steps": float(branches.steps),
        "q_hat_mean": float(q_hat.mean()),
        "q_hat_spread": float(q_hat.std(axis=1).mean()),  # across a state's actions
    }
    return Batch(
        objective,
        rollout.env_steps + branches.steps,
        rollout.episode_returns,
        rollout.episode_lengths,
        trunk_obs,
        extra,
    )
