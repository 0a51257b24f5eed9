"""Glue for rule claims: decide the grid's claims from the run table
(trpo_bench.analysis.claims)."""

import sys

import pandas as pd
import yaml

from trpo_bench.analysis import claims, plots, report
from trpo_bench.analysis import tables as analysis

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

opts = sm.params.analysis
conf, samples, seed = opts["confidence"], opts["bootstrap_samples"], opts["bootstrap_seed"]
with open(sm.input.reference) as f:
    norm_ref = (yaml.safe_load(f) or {}).get("normalization", {})

runs = pd.read_csv(sm.input.runs)
table = pd.read_csv(sm.input.comparison, keep_default_na=False, na_values=[""])
scores = analysis.claim_scores(runs, table)
# The claims this grid can speak to: its envs and methods only; the others are named.
decidable, skipped = claims.restrict_claims(sm.params.claims, sm.params.envs, sm.params.methods)
results = claims.evaluate_claims(decidable, scores, conf, samples, seed)
verdicts = claims.claim_verdicts(results)

# Aggregates over envs on normalised scores (random = 0, best published = 1).
metric = analysis.YARDSTICKS[opts.get("metric", "eval")]["final"]
scored = scores[scores["env"].isin(list(norm_ref))]
norm = scored[["env", "method", "seed"]].assign(
    score=claims.normalized_scores(
        scored,
        metric,
        {e: v["random"] for e, v in norm_ref.items()},
        {e: v["best"] for e, v in norm_ref.items()},
    )
)
iqm = claims.aggregate_iqm(norm, conf, samples, seed)
profile = claims.performance_profile(norm)
colors = plots.method_colors(list(dict.fromkeys(table["method"])))
plots.save(claims.performance_profile_figure(profile, colors), sm.params.profile_stem)

note = analysis.claims_note(runs, sm.params.envs)
note += "".join(f"\n\n- {line}" for line in skipped)
text = claims.claims_markdown(results, verdicts, sm.params.title, note, conf)
text += "\n" + analysis.iqm_markdown(iqm, metric, norm_ref) + "\n"
with open(sm.output.markdown, "w") as f:
    f.write(text)
with open(sm.output.html, "w") as f:
    f.write(report.claims_html(verdicts, note, sm.params.title))
results.to_csv(sm.output.comparisons, index=False)
verdicts.to_csv(sm.output.verdicts, index=False)
iqm.to_csv(sm.output.iqm, index=False)
