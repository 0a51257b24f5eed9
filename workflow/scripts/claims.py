"""Glue for rule claims: decide the grid's claims from the run table
(trpo_bench.analysis.claims_tables)."""

import sys

import pandas as pd

from trpo_bench.analysis import plots
from trpo_bench.analysis.claims_tables import decide_claims
from trpo_bench.analysis.references import load_reference

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

norm_ref = load_reference(sm.input.reference).get("normalization", {})
decided = decide_claims(
    pd.read_csv(sm.input.runs),
    pd.read_csv(sm.input.comparison, keep_default_na=False, na_values=[""]),
    sm.params.claims,
    sm.params.envs,
    sm.params.methods,
    sm.params.analysis,
    norm_ref,
    sm.params.title,
)
plots.save(decided.profile, sm.params.profile_stem)
with open(sm.output.markdown, "w") as f:
    f.write(decided.markdown)
with open(sm.output.html, "w") as f:
    f.write(decided.html)
decided.results.to_csv(sm.output.comparisons, index=False)
decided.verdicts.to_csv(sm.output.verdicts, index=False)
decided.iqm.to_csv(sm.output.iqm, index=False)
