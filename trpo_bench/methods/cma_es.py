"""CMA-ES (Hansen & Ostermeier 2001) over the flat policy parameters, through the ``cma`` package.

The ``cma`` package keeps the search distribution ``N(m, sigma^2 C)`` and adapts ``m``,
``sigma`` and the full covariance ``C`` from the ranking of each generation (ask/tell; see
:mod:`trpo_bench.methods.search` for the budget, the evaluation and the iterations): ``ask`` draws
``population_size`` candidates, they are evaluated beside the mean ``m``, and ``tell`` gets
their negated returns (``cma`` minimises). ``m`` starts at the policy's own initialisation,
``sigma`` at ``cma_sigma0``. With ``cma_diagonal`` only the diagonal of ``C`` is adapted
(sep-CMA-ES), which is much cheaper for networks of 1000s of weights.

Reproducibility: ``cma`` draws its normal numbers through its ``randn`` option; here that is a
generator re-seeded from ``(seed, generation)`` before every generation, so a resumed run draws
what an uninterrupted one draws and no global random state is touched. ``cma``'s stopping rules
are not used: a run always spends its whole budget.

Also runnable as a script with the command line of ``trpo-bench train``::

    python baselines/cma_es.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-cma
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trpo_bench.config import TrainConfig
from trpo_bench.methods.search import run_search
from trpo_bench.run.tracking import RunRecorder


class IterationNormal:
    """``cma``'s source of N(0, 1) numbers (its ``randn(*shape)`` option), set per generation."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAES:
    """ask/tell on a ``cma.CMAEvolutionStrategy`` with population ``P``."""

    def __init__(self, cfg: TrainConfig, x0: np.ndarray, population: int) -> None:
        # Imported here, not at the top: cma imports scipy.stats and matplotlib.pyplot (1.6 s
        # on this machine), which every trpo-bench process (each job's start, `trpo-bench
        # status`) paid through the method registry, CMA-ES or not.
        import cma

        self.normal = IterationNormal()
        options = {
            "popsize": population,
            "randn": self.normal,
            "seed": float("nan"),  # no global seeding: our randn is seeded per generation
            "verbose": -9,
            "CMA_diagonal": cfg.cma_diagonal,
        }
        self.es = cma.CMAEvolutionStrategy(
            np.asarray(x0, dtype=np.float64), cfg.cma_sigma0, options
        )

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.es.mean, dtype=np.float64)

    def ask(self, iteration: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        self.normal.rng = rng
        mean = self.mean.copy()
        return mean, np.asarray(self.es.ask(), dtype=np.float64)

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> dict[str, float]:
        self.es.tell(list(candidates), list(-fitness))
        return {
            "sigma": float(self.es.sigma),
            "search_std_mean": float(np.mean(self.es.stds)),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"es": self.es}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.es = state["es"]
        self.normal = self.es.opts["randn"]


def run(cfg: TrainConfig, recorder: RunRecorder) -> dict:
    """``--method cma-es``: the shared search loop
    (:func:`trpo_bench.methods.search.run_search`)."""
    return run_search(cfg, recorder, CMAES)
