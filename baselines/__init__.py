"""Derivative-free baselines of the paper's Figure 4, run like every other trpo_bench method.

* :mod:`baselines.cem`: the noisy cross-entropy method (Szita & Lorincz 2006);
* :mod:`baselines.cma_es`: CMA-ES through the ``cma`` package (ask/tell);
* :mod:`baselines.rwr`: reward-weighted regression, a step rule on single-path samples;
* :mod:`baselines.search`: what CEM and CMA-ES share: the budget, the batched evaluation of a
  population of policies, the progress row and the command line.

Each module is registered in :mod:`trpo_bench.methods` (``--method cem`` / ``cma-es`` / ``rwr``)
and runs on its own with the same command line as ``trpo-bench train``::

    python baselines/cem.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-cem
"""
