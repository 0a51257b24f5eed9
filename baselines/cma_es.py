"""Run CMA-ES (trpo_bench.methods.cma_es) with the command line of ``trpo-bench train``::

    python baselines/cma_es.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-cma_es

A script, not a module: the method's code is in the trpo_bench package (no top-level package
named ``baselines`` is installed, which would shadow OpenAI's of that name).
"""

import sys

from trpo_bench.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("cma-es"))
