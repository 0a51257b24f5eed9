"""Glue for rule aggregate: read the grid's run folders, write the tables
(trpo_bench.analysis.tables): CSV, Markdown, and the comparison as a standalone HTML page
for the report (trpo_bench.analysis.report)."""

import logging
import sys

from trpo_bench.analysis import report
from trpo_bench.analysis import tables as analysis
from trpo_bench.analysis.references import load_reference

sm = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
sys.stderr = open(sm.log[0], "a")  # noqa: SIM115 (warnings go to the rule's log)

opts = sm.params.analysis
conf, samples, seed = opts["confidence"], opts["bootstrap_samples"], opts["bootstrap_seed"]
reference = load_reference(sm.input.reference)  # with env plug-ins' published numbers

metric = opts.get("metric", "eval")
runs, progress = analysis.load_runs(sm.params.planned, metric)
summary = analysis.summarize(runs, conf, samples, seed)
best = analysis.select_best(summary, by=opts["select_by"])
table = analysis.comparison(best, reference, sm.params.envs)
curves = analysis.learning_curves(progress, runs, conf, min(samples, 2000), seed)

runs.to_csv(sm.output.runs, index=False)
summary.to_csv(sm.output.summary, index=False)
table.to_csv(sm.output.comparison, index=False)
curves.to_csv(sm.output.curves, index=False)
with open(sm.output.markdown, "w") as f:
    f.write(analysis.to_markdown(table, runs, reference, conf, sm.params.title, metric))
with open(sm.output.html, "w") as f:
    f.write(report.comparison_html(table, runs, conf, sm.params.title, metric))

bad = analysis.problems(runs)
logging.info("%d planned runs, %d not completed with a return", len(runs), len(bad))
for row in bad.itertuples(index=False):
    logging.warning(
        "NOT AVERAGED: %s / %s / seed %s: %s", row.env, row.variant, row.seed, row.status
    )
