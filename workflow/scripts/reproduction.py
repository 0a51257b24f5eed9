"""Glue for rule reproduction: the committed report of a real run
(trpo_bench.analysis.reproduction)."""

import sys
from pathlib import Path

from trpo_bench.analysis.reproduction import write_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

write_report(
    sm.params.results,
    sm.config,
    Path(sm.output.page).parent,
    sm.params.grid_file,
    sm.params.command,
    sm.params.envs,
)
