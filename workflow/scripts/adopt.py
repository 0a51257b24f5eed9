"""Glue for rule adopt: write a committed run into its run folder (trpo_bench.committed)."""

import sys
from pathlib import Path

from trpo_bench.committed import adopt_run

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

source, out = Path(sm.input.summary).parent, Path(sm.output.summary).parent
adopt_run(source, out)
print(f"adopted {source} into {out}", file=sys.stderr)
