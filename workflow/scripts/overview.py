"""Glue for rule overview: the page that opens the report with the answer
(trpo_bench.analysis.report)."""

import sys

import pandas as pd

from trpo_bench.analysis import report

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

opts = sm.params.analysis
runs = pd.read_csv(sm.input.runs)
table = pd.read_csv(sm.input.comparison, keep_default_na=False, na_values=[""])
verdicts = pd.read_csv(sm.input.verdicts, dtype={"claim": str})
page = report.overview_html(
    verdicts,
    table,
    runs,
    sm.params.envs,
    sm.input.figure,
    opts["confidence"],
    sm.params.title,
    opts.get("metric", "eval"),
)
with open(sm.output[0], "w") as f:
    f.write(page)
