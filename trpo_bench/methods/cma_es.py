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
are not used: a run always spends its whole budget. The checkpoint holds data only
(:mod:`trpo_bench.run.checkpoint`): each generation's generator state and fitness, from which a
resume rebuilds the search by replaying its asks and tells.

Also runnable as a script with the command line of ``trpo-bench train``::

    python baselines/cma_es.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-cma
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.methods.search import run_search
from trpo_bench.run.recorder import RunRecorder


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
        self.cma_version = str(cma.__version__)
        self.rng_states: list[dict[str, Any]] = []  # per generation: the generator's state
        self.told: list[np.ndarray] = []  # per generation: the candidates' fitness
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
        self.rng_states.append(rng.bit_generator.state)
        self.normal.rng = rng
        mean = self.mean.copy()
        return mean, np.asarray(self.es.ask(), dtype=np.float64)

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> dict[str, float]:
        self.told.append(np.array(fitness, dtype=np.float64))
        self.es.tell(list(candidates), list(-fitness))
        return {
            "sigma": float(self.es.sigma),
            "search_std_mean": float(np.mean(self.es.stds)),
        }

    def state_dict(self) -> dict[str, Any]:
        """The search as data: each generation's generator state and the fitness it was told,
        with the mean and sigma they lead to (checked on resume). ``cma``'s object itself is
        not data (a pickle of it names code to run), so a resume rebuilds it by replay."""
        return {
            "rng_states": list(self.rng_states),
            "told": list(self.told),
            "mean": self.mean.copy(),
            "sigma": float(self.es.sigma),
            "cma_version": self.cma_version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay the generations of :meth:`state_dict` on this fresh search: CMA-ES's state is
        a function of its start, its generators and the fitness it was told, so the same asks
        and tells rebuild it bit for bit (no env step; the cost of the run's own updates)."""
        for rng_state, fitness in zip(state["rng_states"], state["told"], strict=True):
            rng = np.random.Generator(np.random.PCG64())
            rng.bit_generator.state = rng_state
            _, candidates = self.ask(len(self.told), rng)
            self.tell(candidates, fitness)
        same = np.array_equal(self.mean, state["mean"]) and float(self.es.sigma) == state["sigma"]
        if not same:
            raise ConfigError(
                f"resuming CMA-ES: replaying {len(self.told)} generations with cma "
                f"{self.cma_version} did not give the checkpoint's mean and sigma (written with "
                f"cma {state.get('cma_version')}); resume with that cma version, or delete the "
                "checkpoint to start the run over"
            )


def run(cfg: TrainConfig, recorder: RunRecorder) -> dict:
    """``--method cma-es``: the shared search loop
    (:func:`trpo_bench.methods.search.run_search`)."""
    return run_search(cfg, recorder, CMAES)
