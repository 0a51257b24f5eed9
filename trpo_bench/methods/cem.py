"""The noisy cross-entropy method (Szita & Lorincz 2006) over the flat policy parameters.

A diagonal Gaussian ``N(mu, diag(sigma^2))`` over the policy network's weights. Each generation
(see :mod:`trpo_bench.methods.search` for the budget, the evaluation and the iterations):

1. draw ``P`` candidates ``theta_k = mu + s * eps_k`` with the sampling std
   ``s^2 = sigma^2 + Z_t``; ``Z_t = cem_extra_std^2 * max(0, 1 - t / cem_extra_decay_iters)``
   in iteration ``t`` is the added noise that keeps the distribution from collapsing early,
   decaying linearly to 0 (Szita & Lorincz's decreasing noise). It decays with the iterations,
   i.e. with the share of the sample budget spent, not with the generations, whose number per
   iteration varies with the episodes' lengths;
2. keep the ``n_e = max(2, round(elite_fraction * P))`` candidates of highest return (ties broken
   by draw order);
3. ``mu <- mean(elite)``, ``sigma^2 <- var(elite)`` (maximum-likelihood fit to the elite).

``mu`` starts at the policy's own initialisation and ``sigma`` at ``cem_init_std``.

Also runnable as a script with the command line of ``trpo-bench train``::

    python baselines/cem.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-cem
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trpo_bench.config import TrainConfig
from trpo_bench.methods.search import run_search
from trpo_bench.run.recorder import RunRecorder


def elite_count(population: int, fraction: float) -> int:
    """``max(2, round(fraction * P))``, at most P: two elites keep a variance to fit."""
    return min(population, max(2, round(fraction * population)))


class CEM:
    """The search distribution and its update (module docstring, steps 1-3)."""

    def __init__(self, cfg: TrainConfig, x0: np.ndarray, population: int) -> None:
        self.cfg, self.population = cfg, population
        self.n_elite = elite_count(population, cfg.elite_fraction)
        self._mean = np.array(x0, dtype=np.float64)
        self.std = np.full_like(self._mean, cfg.cem_init_std)
        self.sample_std = self.std

    @property
    def mean(self) -> np.ndarray:
        return self._mean

    def extra_variance(self, iteration: int) -> float:
        """``Z_t``: the noise added to the elite variance, decaying linearly to 0."""
        decay = max(0.0, 1.0 - iteration / self.cfg.cem_extra_decay_iters)
        return self.cfg.cem_extra_std**2 * decay

    def ask(self, iteration: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        self.extra = self.extra_variance(iteration)
        self.sample_std = np.sqrt(self.std**2 + self.extra)
        eps = rng.standard_normal((self.population, self._mean.size))
        return self._mean.copy(), self._mean + self.sample_std * eps

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> dict[str, float]:
        order = np.argsort(-fitness, kind="stable")
        elite = candidates[order[: self.n_elite]]
        self._mean = elite.mean(axis=0)
        self.std = elite.std(axis=0)
        return {
            "elite_return_mean": float(fitness[order[: self.n_elite]].mean()),
            "elite_size": self.n_elite,
            "sample_std_mean": float(self.sample_std.mean()),
            "extra_std": float(np.sqrt(self.extra)),
            "elite_std_mean": float(self.std.mean()),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self._mean.copy(), "std": self.std.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._mean, self.std = state["mean"].copy(), state["std"].copy()


def run(cfg: TrainConfig, recorder: RunRecorder) -> dict:
    """``--method cem``: the shared search loop (:func:`trpo_bench.methods.search.run_search`) with
    CEM."""
    return run_search(cfg, recorder, CEM)
