"""What the derivative-free searches (CEM, CMA-ES) share: budget, batched evaluation, the loop.

A search keeps a distribution over the flat parameter vector of the policy's network (the
same policy classes and initialisation as the gradient methods, ``trpo_bench.core.policies``) and
improves it from the returns of sampled parameter vectors (candidates) alone.

**Actions.** Candidates act deterministically: the Gaussian policy's mean (``policy.mode``), the
categorical policy's most likely action. The searched vector is therefore the network's weights
only (the Gaussian's ``log_std`` plays no part and stays at ``log_std_init`` in ``policy.pt``).

**Generations and iterations.** A generation draws ``population_size`` candidates from the
current distribution and evaluates them together with the distribution's mean, each on the same
``episodes_per_candidate`` episodes, reset with seeds derived from ``(seed, generation)``
(common random numbers: every candidate meets the same start states). A candidate's fitness is
its mean undiscounted return; the method then updates its distribution. Iteration ``i`` runs
whole generations until the run has simulated ``(i + 1) * steps_per_iter`` steps in all (at
least one generation), so a run spends the gradient methods' budget, iteration by iteration,
to within one generation: many small generations while episodes are short (early, policies
fall), one per iteration once they run to the time limit. ``env_steps`` counts every simulated
step, candidates' and mean's alike. A progress row describes the iteration's last generation:
``return_mean`` is the return of the distribution's mean (the policy searched around, as a
gradient method's ``return_mean`` is that of the policy that sampled the batch);
``best_candidate_return`` and ``population_return_mean`` describe its candidates.

**The budget** (:func:`search_budget`). ``steps_per_iter`` also bounds one generation: with
``population_size: 0`` the population is the number of full-length episodes the iteration's
budget holds (``steps_per_iter // (episodes_per_candidate * T)`` with ``T`` the env's time limit,
minus one for the mean; at least ``MIN_POPULATION``), i.e. as many candidates as single path
gets paths per iteration, as in the paper. Episodes are cut at the horizon
``H = min(T, steps_per_iter // (episodes_per_candidate * (population_size + 1)))``, so a
generation never simulates more than ``steps_per_iter`` steps (an explicit population too large
for the budget gets shorter episodes, and the run says so).

**Speed.** :class:`CandidateEvaluator` steps ``num_envs`` envs as one vector; each env runs one
(candidate, episode) job after another, and all envs' policies run in one batched call per step
(stacked weights, one ``baddbmm`` per layer), so the simulator is the bottleneck.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.core.policies import CategoricalMLPPolicy, GaussianMLPPolicy, Policy
from trpo_bench.envs.registry import env_options, env_spec, make_env
from trpo_bench.envs.workers import AnyEnvVector
from trpo_bench.run.evaluation import PolicyEvaluator, is_due
from trpo_bench.run.learner import build_learner, policy_artifact
from trpo_bench.run.progress import episode_stats
from trpo_bench.run.recorder import RunRecorder
from trpo_bench.sampling.single_path import iteration_seeds

MIN_POPULATION = 4
"""Smallest population derived from the budget (CMA-ES's own default is 4 + 3 ln n >= 4)."""


# --- the budget -----------------------------------------------------------------------------


def episode_limit(env_id: str) -> int | None:
    """The env's time limit T (gymnasium's ``max_episode_steps``), None if it has none."""
    spec = env_spec(env_id)
    if spec.family != "atari":  # read from the registry, without building the env
        try:
            return gym.spec(spec.gym_id or env_id).max_episode_steps
        except gym.error.Error:
            pass
    env = make_env(env_id)
    limit = env.spec.max_episode_steps if env.spec is not None else None
    env.close()
    return limit


@dataclass(frozen=True)
class SearchBudget:
    """How one generation spends ``steps_per_iter``."""

    population: int  # candidates per generation (the mean is evaluated besides)
    episodes: int  # episodes per candidate (and for the mean)
    horizon: int  # episodes are cut after this many steps
    env_limit: int | None  # the env's own time limit T

    @property
    def max_steps(self) -> int:
        """The most a generation can simulate: every episode running to the horizon."""
        return (self.population + 1) * self.episodes * self.horizon


def search_budget(cfg: TrainConfig) -> SearchBudget:
    """Population and episode horizon of a generation (see the module docstring).

    Raises :class:`ConfigError` when ``steps_per_iter`` cannot hold one step of every episode,
    when an explicit population is below 2, or when the population must be derived but the env
    has no time limit.
    """
    limit = episode_limit(cfg.env)
    episodes = cfg.episodes_per_candidate
    if cfg.population_size == 1:
        raise ConfigError(
            "config key 'population_size': 1 is out of range "
            "(allowed: 0 = derived from steps_per_iter, or >= 2)"
        )
    if cfg.population_size:
        population = cfg.population_size
    elif limit is None:
        raise ConfigError(
            f"env {cfg.env!r} has no time limit to derive population_size from "
            "steps_per_iter: set population_size (>= 2)"
        )
    else:
        population = max(MIN_POPULATION, cfg.steps_per_iter // (episodes * limit) - 1)
    horizon = cfg.steps_per_iter // (episodes * (population + 1))
    if horizon < 1:
        raise ConfigError(
            f"config key 'steps_per_iter': {cfg.steps_per_iter} is out of range for "
            f"{cfg.method} (allowed: >= episodes_per_candidate * (population_size + 1) = "
            f"{episodes * (population + 1)}, one step per episode of every candidate and the mean)"
        )
    if limit is not None:
        horizon = min(horizon, limit)
    return SearchBudget(population, episodes, horizon, limit)


def check_config(cfg: TrainConfig) -> None:
    """The method check of ``cem`` and ``cma-es`` (run by ``build_config``, before any work)."""
    search_budget(cfg)


# --- batched evaluation of many parameter vectors -------------------------------------------


def policy_head(policy: Policy) -> nn.Module:
    """The network whose output gives the deterministic action: the Gaussian's mean network or
    the categorical policy's logits network. Its parameters are what the search changes."""
    if isinstance(policy, GaussianMLPPolicy):
        return policy.mean_net
    if isinstance(policy, CategoricalMLPPolicy):
        return policy.logits_net
    raise TypeError(f"derivative-free search does not know the policy {type(policy).__name__}")


@dataclass
class Evaluation:
    """Undiscounted returns and lengths of ``[K, E]`` episodes (K parameter vectors, E each)."""

    returns: np.ndarray
    lengths: np.ndarray
    visited: np.ndarray | None = None  # every observation stepped from (observation normaliser)

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def fitness(self) -> np.ndarray:
        """Each vector's mean return over its episodes."""
        return self.returns.mean(axis=1)


class CandidateEvaluator:
    """Evaluates many parameter vectors of one policy network, stepping its envs as a vector.

    Each env runs one job (a parameter vector on one seeded episode) after another until the
    jobs run out; at every step the policies of all envs run in one call. A ``tanh`` MLP (the
    suite's policies) runs as one batched matmul per layer over the envs' own weights; any
    other network falls back to ``torch.func.vmap`` over ``functional_call``.
    """

    def __init__(self, envs: AnyEnvVector, policy: Policy, keep_visited: bool = False) -> None:
        # envs.step_raw steps MuJoCo tasks through the vector stepper (gymnasium's rewards,
        # terminations and observations bit for bit, the actions' float32 kept), in this
        # process or in the run's env workers (trpo_bench.envs.workers).
        self.envs, self.policy, self.keep_visited = envs, policy, keep_visited
        self.discrete = envs.discrete
        self.head = policy_head(policy)
        self.names = [name for name, _ in self.head.named_parameters()]
        self.shapes = [p.shape for p in self.head.parameters()]
        self.dim = sum(p.numel() for p in self.head.parameters())
        n = envs.num_envs
        self.obs = np.zeros((n, *envs.observation_space.shape), dtype=np.float32)
        # Row s holds the parameter vector of the job env s is running.
        self.slot_params = torch.zeros(n, self.dim)
        self._layers = self._plan_layers(n)
        if not self.discrete:
            self._low = envs.action_space.low.astype(np.float32)
            self._high = envs.action_space.high.astype(np.float32)

    def _plan_layers(self, n: int) -> list[tuple[Tensor, Tensor] | None] | None:
        """Per-env weight views for a Sequential of Linear / Tanh layers (None: other nets).

        ``Linear(x) = x W^T + b`` becomes ``baddbmm(b[s], x[s], W[s]^T)`` over envs s; the views
        share memory with ``slot_params``, so copying a job's vector into its row updates them.
        """
        if not isinstance(self.head, nn.Sequential):
            return None
        layers: list[tuple[Tensor, Tensor] | None] = []
        offset = 0
        for module in self.head:
            if isinstance(module, nn.Linear) and module.bias is not None:
                out_dim, in_dim = module.weight.shape
                w = self.slot_params[:, offset : offset + out_dim * in_dim]
                offset += out_dim * in_dim
                b = self.slot_params[:, offset : offset + out_dim]
                offset += out_dim
                layers.append((w.view(n, out_dim, in_dim).transpose(1, 2), b.view(n, 1, out_dim)))
            elif isinstance(module, nn.Tanh):
                layers.append(None)
            else:
                return None
        return layers

    @torch.no_grad()
    def actions(self) -> np.ndarray:
        """The deterministic action of every env's current job at its current observation."""
        x = self.policy.preprocess(torch.from_numpy(self.obs))
        if self._layers is not None:
            h = x.reshape(x.shape[0], 1, -1)
            for layer in self._layers:
                h = torch.tanh(h) if layer is None else torch.baddbmm(layer[1], h, layer[0])
            out = h.squeeze(1)
        else:
            out = self._vmap_forward(x)
        if self.discrete:
            return out.argmax(-1).numpy()
        return np.clip(out.numpy(), self._low, self._high)

    def _vmap_forward(self, x: Tensor) -> Tensor:
        parts = torch.split(self.slot_params, [math.prod(s) for s in self.shapes], dim=1)
        params = {
            name: p.reshape(-1, *shape)
            for name, p, shape in zip(self.names, parts, self.shapes, strict=True)
        }

        def one(p: dict[str, Tensor], obs: Tensor) -> Tensor:
            return torch.func.functional_call(self.head, p, (obs.unsqueeze(0),)).squeeze(0)

        return torch.func.vmap(one)(params, x)

    def evaluate(self, vectors: Tensor, seeds: Sequence[int], horizon: int) -> Evaluation:
        """Run each of the ``[K, D]`` parameter vectors on one episode per seed, cut at
        ``horizon`` steps (or ended by the env). Episodes are independent of which env runs
        them: every job starts with ``env.reset(seed=...)``."""
        vectors = vectors.to(torch.float32)
        k, e = vectors.shape[0], len(seeds)
        n_jobs = k * e
        returns = np.zeros(n_jobs)
        lengths = np.zeros(n_jobs, dtype=np.int64)
        visited: list[np.ndarray] = []
        n = min(self.envs.num_envs, n_jobs)
        job_of = np.zeros(n, dtype=np.int64)
        next_job = 0
        to_reset: list[int] = []  # slots whose next job starts: reset together, one call

        def start(slot: int) -> None:
            nonlocal next_job
            job = next_job
            next_job += 1
            job_of[slot] = job
            self.slot_params[slot] = vectors[job // e]
            to_reset.append(slot)

        def reset_started() -> None:
            if to_reset:
                seeds_of = [int(seeds[job_of[slot] % e]) for slot in to_reset]
                self.obs[to_reset] = self.envs.reset_some(to_reset, seeds_of)
                to_reset.clear()

        for slot in range(n):
            start(slot)
        reset_started()
        active = list(range(n))
        ret = np.zeros(n)
        length = np.zeros(n, dtype=np.int64)
        while active:
            if self.keep_visited:
                visited.append(self.obs[active].copy())
            actions = self.actions()
            obs, reward, terminated, truncated = self.envs.step_raw(actions[active], active)
            running = []
            for j, slot in enumerate(active):
                ret[slot] += reward[j]
                length[slot] += 1
                if terminated[j] or truncated[j] or length[slot] >= horizon:
                    job = job_of[slot]
                    returns[job], lengths[job] = ret[slot], length[slot]
                    ret[slot], length[slot] = 0.0, 0
                    if next_job < n_jobs:
                        start(slot)
                        running.append(slot)
                else:
                    self.obs[slot] = obs[j]
                    running.append(slot)
            reset_started()
            active = running
        return Evaluation(
            returns.reshape(k, e),
            lengths.reshape(k, e),
            np.concatenate(visited) if visited else None,
        )


# --- the shared loop ------------------------------------------------------------------------


class Strategy(Protocol):
    """A search distribution over parameter vectors (CEM, CMA-ES)."""

    def ask(self, iteration: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The distribution's mean ``[D]`` and ``population`` candidates ``[P, D]``, drawn
        with ``rng`` during ``iteration`` (the share of the budget spent so far)."""
        ...

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> dict[str, float]:
        """Update from the candidates' fitness (higher is better); returns progress columns."""
        ...

    @property
    def mean(self) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


StrategyFactory = Callable[[TrainConfig, np.ndarray, int], Strategy]
"""Builds a strategy from the config, the initial vector (the policy's own init) and P."""


class SearchProblem:
    """The policy, its envs and evaluator, and the budget of one search run."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.budget = search_budget(cfg)
        # The same envs and policy init as the gradient methods; on the CPU whatever `device`
        # says (the search's batched candidate evaluation is numpy and small torch passes).
        learner = build_learner(cfg, torch.device("cpu"))
        self.envs, self.policy = learner.envs, learner.policy
        self.evaluator = CandidateEvaluator(
            self.envs, self.policy, keep_visited=self.policy.obs_norm is not None
        )
        self.yardstick = PolicyEvaluator(cfg.env, cfg.eval_episodes, env_options(cfg))

    def initial_vector(self) -> np.ndarray:
        return parameters_to_vector(self.evaluator.head.parameters()).detach().double().numpy()

    def evaluate(self, vectors: np.ndarray, seeds: Sequence[int]) -> Evaluation:
        evaluation = self.evaluator.evaluate(torch.from_numpy(vectors), seeds, self.budget.horizon)
        if self.policy.obs_norm is not None and evaluation.visited is not None:
            # Learns after the generation, so every candidate saw the same normalisation.
            self.policy.obs_norm.update(torch.from_numpy(evaluation.visited))
        return evaluation

    def load(self, vector: np.ndarray) -> Policy:
        """The run's policy with ``vector`` as its network's weights."""
        params = list(self.evaluator.head.parameters())
        with torch.no_grad():
            vector_to_parameters(torch.as_tensor(vector, dtype=torch.float32), params)
        return self.policy

    def evaluate_mean(self, vector: np.ndarray, iteration: int) -> dict[str, float]:
        """The evaluation protocol's columns for the search mean (deterministic actions only:
        the searched policy is deterministic, so the ``eval_sampled_*`` columns are NaN)."""
        return self.yardstick(self.load(vector), iteration, sampled=False)

    def artifact(self, vector: np.ndarray) -> dict[str, Any]:
        return policy_artifact(self.cfg, self.load(vector))

    def close(self) -> None:
        self.envs.close()
        self.yardstick.close()


def run_search(
    cfg: TrainConfig, recorder: RunRecorder, make_strategy: StrategyFactory
) -> dict[str, Any]:
    """The loop of every derivative-free method: ask -> evaluate -> tell, generation after
    generation; a progress row each time the run's steps reach the next iteration's mark.

    ``trainer.train`` hands it the run's recorder and writes the run's end (summary.json,
    policy.pt, MLflow status) from the policy artifact returned: the final mean's weights.
    """
    problem = SearchProblem(cfg)
    budget = problem.budget
    strategy = make_strategy(cfg, problem.initial_vector(), budget.population)
    generation = 0
    if recorder.resumed_state is not None:
        problem.policy.load_state_dict(recorder.resumed_state["policy"])
        strategy.load_state_dict(recorder.resumed_state["search"])
        generation = recorder.resumed_state["generation"]
    if budget.env_limit is not None and budget.horizon < budget.env_limit:
        note = (
            f"{budget.population} candidates x {budget.episodes} episodes in "
            f"steps_per_iter={cfg.steps_per_iter}: episodes cut at {budget.horizon} of "
            f"{budget.env_limit} steps"
        )
        recorder.log(f"note: {note}")
        recorder.notes.append(note)  # summary.json's `notes`, for the tables
    try:
        for it in range(recorder.next_iteration, cfg.iterations):
            start = time.perf_counter()
            mark = (it + 1) * cfg.steps_per_iter  # the gradient methods' env_steps after `it`
            steps, generations, eval_time, update_time = 0, 0, 0.0, 0.0
            while generations == 0 or recorder.env_steps + steps < mark:
                t0 = time.perf_counter()
                env_seeds, rng_seed = iteration_seeds(cfg.seed, generation, budget.episodes)
                # 1. Ask: the distribution's mean and P candidates, from the generation's seed.
                mean, candidates = strategy.ask(it, np.random.default_rng(rng_seed))
                t1 = time.perf_counter()
                # 2. Evaluate the mean (row 0) and the candidates on the same seeded episodes.
                evaluation = problem.evaluate(np.vstack([mean[None], candidates]), env_seeds)
                t2 = time.perf_counter()
                fitness = evaluation.fitness[1:]
                # 3. Tell: the method updates its distribution from the candidates' fitness.
                stats = strategy.tell(candidates, fitness)
                eval_time += t2 - t1
                update_time += (t1 - t0) + (time.perf_counter() - t2)  # ask + tell
                steps += evaluation.env_steps
                generation += 1
                generations += 1
            # 4. The evaluation protocol (trpo_bench.run.evaluation) on the current mean.
            yardstick = (
                problem.evaluate_mean(strategy.mean, it)
                if is_due(it, cfg.iterations, cfg.eval_every)
                else {}
            )
            # 5. Record the iteration's last generation (the latest mean evaluated).
            recorder.record(
                {
                    "eval_time_s": round(eval_time, 3),
                    "update_time_s": round(update_time, 3),
                    **episode_stats(
                        [float(r) for r in evaluation.returns[0]],
                        [int(n) for n in evaluation.lengths[0]],
                    ),
                    "best_candidate_return": float(fitness.max()),
                    "population_return_mean": float(fitness.mean()),
                    "population_return_std": float(fitness.std()),
                    "population_size": budget.population,
                    "candidate_episode_length_mean": float(evaluation.lengths[1:].mean()),
                    "episode_horizon": budget.horizon,
                    "generations": generations,
                    "generations_total": generation,
                    **stats,
                    **yardstick,
                },
                env_steps=steps,
                seconds=time.perf_counter() - start,
            )
            recorder.commit(
                {
                    "policy": problem.policy.state_dict(),
                    "search": strategy.state_dict(),
                    "generation": generation,
                }
            )
        return problem.artifact(strategy.mean)
    finally:
        problem.close()
