"""Run CEM, the noisy cross-entropy method (trpo_bench.methods.cem), with the command line of
``trpo-bench train``::

    python baselines/cem.py --env InvertedPendulum-v5 --seed 0 --out runs/ip-cem

A script, not a module: the method's code is in the trpo_bench package (no top-level package
named ``baselines`` is installed, which would shadow OpenAI's of that name).
"""

import sys

from trpo_bench.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("cem"))
