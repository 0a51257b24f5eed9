"""Glue for rule plots: a learning-curve figure per env and the all-envs grid
(trpo_bench.analysis.plots)."""

import sys

import pandas as pd

from trpo_bench.analysis import plots
from trpo_bench.analysis.references import load_reference

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

curves = pd.read_csv(sm.input.curves)
table = pd.read_csv(sm.input.comparison, keep_default_na=False, na_values=[""])
conf = sm.params.confidence
reference = load_reference(sm.input.reference)  # Atari panels: random, human, the paper's TRPO
*env_stems, grid_stem = sm.params.stems
for env, stem in zip(sm.params.envs, env_stems, strict=True):
    plots.save(plots.env_figure(curves, table, env, conf, reference), stem)
plots.save(plots.figure4(curves, table, sm.params.envs, conf, reference), grid_stem)
