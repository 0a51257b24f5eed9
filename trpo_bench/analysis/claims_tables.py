"""From a grid's run table to its claims' tables: the one place that turns ``runs.csv`` and
``comparison.csv`` into verdicts, comparisons, the IQM aggregate and the performance profile
(rule ``claims``; :func:`trpo_bench.analysis.reproduction.refresh_report` re-decides a
committed page with it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from trpo_bench.analysis import claims, plots, report
from trpo_bench.analysis import tables as analysis


@dataclass
class ClaimTables:
    results: pd.DataFrame  # every comparison (claims_comparisons.csv)
    verdicts: pd.DataFrame  # one row per claim (claims.csv)
    iqm: pd.DataFrame  # iqm.csv
    markdown: str  # claims.md
    html: str  # claims.html
    profile: Figure  # the performance profile, unsaved


def decide_claims(
    runs: pd.DataFrame,
    table: pd.DataFrame,
    grid_claims: Sequence[Mapping[str, Any]],
    envs: Sequence[str],
    methods: Sequence[str],
    analysis_opts: Mapping[str, Any],
    normalization: Mapping[str, Mapping[str, float]],
    title: str,
) -> ClaimTables:
    """Decide the grid's claims on its envs and methods (the others are named as not decided)
    from the run table and the comparison table, with the grid's ``analysis`` settings and the
    reference's ``normalization`` (random and best score per env)."""
    conf = analysis_opts.get("confidence", 0.95)
    samples = analysis_opts.get("bootstrap_samples", 10_000)
    seed = analysis_opts.get("bootstrap_seed", 0)
    stability = analysis_opts.get("stability_seeds", claims.STABILITY_SEEDS)
    scores = analysis.claim_scores(runs, table)
    decidable, skipped = claims.restrict_claims(grid_claims, envs, methods)
    results = claims.evaluate_claims(decidable, scores, conf, samples, seed, stability)
    verdicts = claims.claim_verdicts(results)

    # Aggregates over envs on normalised scores (random = 0, best published = 1).
    metric = analysis.YARDSTICKS[analysis_opts.get("metric", "eval")]["final"]
    scored = scores[scores["env"].isin(list(normalization))]
    norm = scored[["env", "method", "seed"]].assign(
        score=claims.normalized_scores(
            scored,
            metric,
            {e: v["random"] for e, v in normalization.items()},
            {e: v["best"] for e, v in normalization.items()},
        )
    )
    iqm = claims.aggregate_iqm(norm, conf, samples, seed)
    colors = plots.method_colors(list(dict.fromkeys(table["method"])))
    profile = claims.performance_profile_figure(claims.performance_profile(norm), colors)

    note = analysis.claims_note(runs, envs)
    note += "".join(f"\n\n- {line}" for line in skipped)
    text = claims.claims_markdown(results, verdicts, title, note, conf)
    text += "\n" + analysis.iqm_markdown(iqm, metric, normalization) + "\n"
    return ClaimTables(
        results, verdicts, iqm, text, report.claims_html(verdicts, note, title), profile
    )
