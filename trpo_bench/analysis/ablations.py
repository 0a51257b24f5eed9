"""Ablations: each explanation the reproduction gives, tested by runs and decided.

An ablation grid (``config/ablation-*.yaml``, read on top of ``config/claims.yaml``) sweeps one
key of one or more methods; its ``ablation`` entry (one mapping, or a list of them where the
grid sweeps several keys, as the baselines' pilot does) says the question, the explanation it
tests, the methods, the key and the baseline value (the claims grid's), and optionally the
value a pilot ``chosen`` for the claims grid, which :func:`conclusion` then justifies from the
means. Its finished runs are
committed (``committed_runs``; ``trpo-bench publish``), and :func:`ablation_table` decides, per
env and method, whether each other value beats the baseline on the final evaluation return:
P(value > baseline) with a bootstrap interval, the exact rank-test p and a verdict, as the
claims are decided (``trpo_bench.analysis.claims``). :func:`conclusion` says in one sentence
what the data say of the explanation: *supported* where some value beats the baseline,
*contradicted* where a value loses to it and none beats it, *undecided* otherwise.

Read from the committed files only (summary.json: JSON; nothing executed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from trpo_bench.analysis.claims import poi_interval, rank_test_p, verdict
from trpo_bench.analysis.tables import markdown_table

COLUMNS = [
    "ablation",
    "env",
    "method",
    "key",
    "value",
    "baseline",
    "seeds",
    "mean",
    "min",
    "max",
    "baseline_mean",
    "p_improvement",
    "ci_low",
    "ci_high",
    "p_rank",
    "verdict",
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-12)
    return a == b


def smallest_rank_p(n: int, m: int) -> float:
    """The smallest two-sided p an exact rank test of ``n`` against ``m`` seeds can give: the
    two most extreme of the C(n + m, n) splits (2/252 for 5 vs 5, 1/3 for 2 vs 2)."""
    return 1.0 if min(n, m) == 0 else min(1.0, 2 / math.comb(n + m, n))


def spec_methods(spec: Mapping[str, Any]) -> list[str]:
    """The methods an ablation spec compares (``methods``: one name or a list)."""
    return [spec["methods"]] if isinstance(spec["methods"], str) else list(spec["methods"])


def ablation_table(
    name: str, spec: Mapping[str, Any], runs: pd.DataFrame, samples: int = 10_000, seed: int = 0
) -> pd.DataFrame:
    """Per env, method and non-baseline value of ``spec['key']``: the value's and the
    baseline's final scores and P(value > baseline) decided as a ``better`` claim (columns
    :data:`COLUMNS`). ``runs``: the committed runs' table
    (``trpo_bench.analysis.committed_runs.read_committed``)."""
    key, baseline = spec["key"], spec["baseline"]
    metric = spec.get("metric", "final_eval_return")
    methods = spec_methods(spec)
    rows = []
    if runs.empty:
        return pd.DataFrame(rows, columns=COLUMNS)
    values = runs["config"].map(lambda c: c.get(key))
    for (env, method), group in runs[runs["method"].isin(methods)].groupby(
        ["env", "method"], sort=False
    ):
        vals = values[group.index]
        base = group.loc[[_same(v, baseline) for v in vals], metric].to_numpy(float)
        others = list(dict.fromkeys(v for v in vals if not _same(v, baseline)))
        for value in others:
            x = group.loc[[_same(v, value) for v in vals], metric].to_numpy(float)
            n = min(len(x), len(base))
            point, low, high = poi_interval([x], [base], 0.95, samples, seed)
            v, _ = verdict("better", point, low, high, n)
            p_rank, _ = rank_test_p([x], [base], seed)
            if smallest_rank_p(len(x), len(base)) >= 0.05:
                # Too few seeds for any split to be rare (2 vs 2: p >= 1/3): the bootstrap's
                # interval collapses to a point there, so it decides nothing.
                v = "undecided"
            rows.append(
                {
                    "ablation": name,
                    "env": env,
                    "method": method,
                    "key": key,
                    "value": value,
                    "baseline": baseline,
                    "seeds": n,
                    "mean": float(np.mean(x)) if len(x) else math.nan,
                    "min": float(np.min(x)) if len(x) else math.nan,
                    "max": float(np.max(x)) if len(x) else math.nan,
                    "baseline_mean": float(np.mean(base)) if len(base) else math.nan,
                    "p_improvement": point,
                    "ci_low": low,
                    "ci_high": high,
                    "p_rank": p_rank,
                    "verdict": v,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


SPEC_KEYS = ("question", "explanation", "methods", "key", "baseline")


def ablation_specs(grid_file: str, entry: Any) -> list[Mapping[str, Any]]:
    """A grid file's ``ablation`` entry as a list of specs, each with the keys it needs."""
    specs = [entry] if isinstance(entry, Mapping) else entry
    if not isinstance(specs, list) or not specs:
        raise ValueError(
            f"{grid_file} has no `ablation` entry: give an ablation grid file (its `ablation` "
            f"is a mapping, or a list of them, with {', '.join(SPEC_KEYS)})"
        )
    for spec in specs:
        missing = [k for k in SPEC_KEYS if not isinstance(spec, Mapping) or k not in spec]
        if missing:
            raise ValueError(
                f"{grid_file}: an `ablation` entry lacks {', '.join(missing)} "
                f"(needed: {', '.join(SPEC_KEYS)})"
            )
    return specs


def choice(spec: Mapping[str, Any], table: pd.DataFrame) -> str:
    """For a pilot's spec (``chosen``): which value the grid took and where its mean is higher
    or lower than the other value's, read from ``table``; empty without ``chosen``."""
    if "chosen" not in spec or table.empty:
        return ""
    chosen, key = spec["chosen"], spec["key"]
    higher, lower = [], []
    for r in table.itertuples():
        if _same(r.value, chosen):
            ours, theirs, other = r.mean, r.baseline_mean, r.baseline
        else:
            ours, theirs, other = r.baseline_mean, r.mean, r.value
        where = f"{r.env} ({ours:.1f} against {theirs:.1f} for {key} = {other})"
        (higher if ours > theirs else lower).append(where)
    parts = [f"The claims grid takes {key} = {chosen}"]
    if higher:
        parts.append(f"whose mean is higher on {'; '.join(higher)}")
    if lower:
        parts.append(
            f"{'and ' if higher else 'whose mean is '}lower or equal on {'; '.join(lower)}"
        )
    return ", ".join(parts) + "."


def conclusion(spec: Mapping[str, Any], table: pd.DataFrame) -> str:
    """One sentence: what the ablation's comparisons say of its explanation."""
    explanation = spec["explanation"]
    if table.empty:
        return f"No finished runs yet: {explanation} is untested."
    won = table[table["verdict"] == "holds"]
    lost = table[table["verdict"] == "fails"]

    def where(rows: pd.DataFrame) -> str:
        return "; ".join(
            f"{r.method} with {r.key} = {r.value} on {r.env} "
            f"(P = {r.p_improvement:.2f}, {r.mean:.0f} against {r.baseline_mean:.0f})"
            for r in rows.itertuples()
        )

    if len(won):
        return (
            f"The data support {explanation} as a cause: against {spec['key']} = "
            f"{spec['baseline']}, {where(won)}."
        )
    if len(lost):
        return (
            f"The data contradict {explanation} as a cause: no other {spec['key']} beats "
            f"{spec['baseline']}, and {where(lost)} does worse."
        )
    return (
        f"Undecided: no other {spec['key']} beats or loses to {spec['baseline']} at "
        f"{int(table['seeds'].min())} seeds; {explanation} is neither supported nor rejected."
    )


def ablations_markdown(sections: Sequence[tuple[str, Mapping[str, Any], pd.DataFrame, str]]) -> str:
    """The page: per ablation, its question, its table and its one-sentence conclusion.
    ``sections`` holds (grid file, ablation spec, :func:`ablation_table`, provenance line)."""
    files = " ".join(dict.fromkeys(grid_file for grid_file, *_ in sections))
    lines = [
        "# Ablations: each explanation tested by runs",
        "",
        f"Generated by `trpo-bench ablations {files}` from the committed runs of each grid "
        "(read on top of `config/claims.yaml`: the claims grid's budgets and settings, one key "
        "changed). Each value is compared with the baseline (the claims grid's value, or the "
        "one a pilot replaced) on the final evaluation return (deterministic; the episodes "
        "per evaluation are given per section) as a claim is: P(value > baseline) over the "
        "seed pairs with a 95% stratified bootstrap interval (holds above 0.5, fails below), "
        "and the exact two-sided rank-test p (252 splits for 5 vs 5 seeds). Where the seeds "
        "are too few for any split to be rare (2 vs 2: p is at least 1/3) the comparison is "
        "undecided whatever the interval.",
        "",
    ]
    for grid_file, spec, table, provenance in sections:
        lines += [f"## {spec['question']}", "", f"`{grid_file}`; {provenance}", ""]
        if len(table):
            shown = pd.DataFrame(
                {
                    "env": table["env"],
                    "method": table["method"],
                    spec["key"]: [
                        f"{v} vs {b}"
                        for v, b in zip(table["value"], table["baseline"], strict=True)
                    ],
                    "seeds": table["seeds"],
                    "final return, value: mean (range)": [
                        f"{m:.1f} ({lo:.1f} to {hi:.1f})"
                        for m, lo, hi in zip(table["mean"], table["min"], table["max"], strict=True)
                    ],
                    "baseline mean": [f"{m:.1f}" for m in table["baseline_mean"]],
                    "P(value > baseline) [CI]": [
                        f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
                        for p, lo, hi in zip(
                            table["p_improvement"], table["ci_low"], table["ci_high"], strict=True
                        )
                    ],
                    "rank-test p": [f"{p:.3f}" for p in table["p_rank"]],
                    "verdict": table["verdict"],
                }
            )
            lines += [markdown_table(shown), ""]
        lines += [f"**{conclusion(spec, table)}**", ""]
        if chosen := choice(spec, table):
            lines += [chosen, ""]
    return "\n".join(lines)


def provenance_text(runs: pd.DataFrame) -> str:
    """How many committed runs, from which commits and machines."""
    if runs.empty:
        return "no committed runs"
    commits = ", ".join(f"`{c[:12]}`" for c in sorted(set(runs["git_commit"])))
    machines = "; ".join(sorted(set(runs["machine"])))
    episodes = sorted({c.get("eval_episodes") for c in runs["config"]} - {None})
    per_eval = f"; {' or '.join(map(str, episodes))} episodes per evaluation" if episodes else ""
    return f"{len(runs)} committed runs, commit {commits}, on {machines}{per_eval}"
