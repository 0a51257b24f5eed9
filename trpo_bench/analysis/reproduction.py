"""The reproduction report: one page that says, claim by claim, what a real run reproduced.

:func:`write_report` turns a finished grid's results folder (its tables, claims and plots, as
the workflow wrote them) into a folder of small files meant to be committed (Markdown, CSV,
PNG): ``README.md`` states the commit the runs came from, the grid, the machine and the wall
time, then each claim with the paper's words beside our verdict and the comparisons behind it.
A hand-written ``discussion.md`` in that folder (why a claim failed or stayed undecided: the
budget, the yardstick, a defect) is kept across regenerations and shown on the page.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trpo_bench.analysis.tables import budget_text, budgets, markdown_table
from trpo_bench.run.provenance import git_commit, machine_text

DISCUSSION = "discussion.md"
COPIED_TABLES = (
    "claims.md",
    "claims.csv",
    "claims_comparisons.csv",
    "comparison.md",
    "comparison.csv",
    "iqm.csv",
    "runs.csv",
)


def _summaries(runs_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("**/summary.json"))]


def wall_time_text(results: Path) -> str:
    """Elapsed time from the MLflow store's creation (the grid's first job) to the last run's
    end, and the sum of the jobs' own times (Snakemake's benchmark files)."""
    start_file = results / "mlflow_experiment.json"
    ends = [p.stat().st_mtime for p in results.glob("runs/**/summary.json")]
    jobs = [pd.read_csv(p, sep="\t")["s"].sum() for p in results.glob("benchmarks/**/*.tsv")]
    parts = []
    if start_file.exists() and ends:
        elapsed = max(ends) - start_file.stat().st_mtime
        parts.append(f"{_hours(elapsed)} elapsed (first job to last run's end)")
    if jobs:
        parts.append(f"{_hours(sum(jobs))} summed over the {len(jobs)} jobs")
    return "; ".join(parts) or "unknown"


def _hours(seconds: float) -> str:
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def _claim_section(
    claim: Mapping[str, Any], verdict: Mapping[str, Any] | None, comparisons: pd.DataFrame
) -> list[str]:
    cid = str(claim["id"])
    rows = comparisons[comparisons["claim"].astype(str) == cid]
    label = verdict["verdict"] if verdict is not None else "not decided (no comparisons)"
    lines = [
        f"### Claim {cid}: {claim.get('statement', '')}",
        "",
        f"- **The paper:** {claim.get('paper', '(no quote given)')}",
        f"- **Here: {label.upper()}**" + (f" ({verdict['counts']})" if verdict is not None else ""),
        f"- Compared: `{claim['metric']}`, "
        + ("alike within the margin" if claim.get("kind") == "similar" else "better beats worse"),
        "",
    ]
    if len(rows):
        shown = pd.DataFrame(
            {
                "scope": rows["scope"],
                "comparison": [
                    f"{b} {'~' if k == 'similar' else '>'} {w}"
                    for b, w, k in zip(rows["better"], rows["worse"], rows["kind"], strict=True)
                ],
                "seeds": rows["seeds"],
                "P(first > second) [CI]": [
                    _p(p, lo, hi)
                    for p, lo, hi in zip(
                        rows["p_improvement"], rows["ci_low"], rows["ci_high"], strict=True
                    )
                ],
                "verdict": rows["verdict"],
                "detail": rows["detail"].fillna(""),
            }
        )
        lines += [markdown_table(shown), ""]
    return lines


def _p(point: float, low: float, high: float) -> str:
    if not math.isfinite(point):
        return ""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{point:.2f}"
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def write_report(
    results: str | Path,
    grid: Mapping[str, Any],
    out: str | Path,
    grid_file: str,
    command: str,
    envs: Sequence[str],
) -> Path:
    """Write ``out/README.md`` and copy the grid's tables and PNG figures beside it; returns
    the page's path. ``grid`` is the resolved grid config (with its ``claims``)."""
    results, out = Path(results), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables, plots = results / "tables", results / "plots"
    for name in COPIED_TABLES:
        if (tables / name).exists():
            shutil.copyfile(tables / name, out / name)
    figures = sorted(p.name for p in plots.glob("*.png"))
    for name in figures:
        shutil.copyfile(plots / name, out / name)

    summaries = _summaries(results / "runs")
    commits = sorted({str(s.get("git_commit", "unknown")) for s in summaries})
    versions = summaries[0].get("versions", {}) if summaries else {}
    runs = pd.read_csv(tables / "runs.csv")
    verdicts = pd.read_csv(tables / "claims.csv", dtype={"claim": str})
    comparisons = pd.read_csv(tables / "claims_comparisons.csv", dtype={"claim": str})
    by_claim = {str(r["claim"]): r for r in verdicts.to_dict("records")}
    done = int((runs["status"] == "completed").sum())

    commit_text = ", ".join(f"`{c}`" for c in commits) or "unknown"
    if len(commits) > 1:
        commit_text += " — **the runs come from more than one commit: not one experiment**"
    if any(c.endswith("-dirty") for c in commits):
        commit_text += " — **run from a tree with uncommitted changes**"
    budget_lines = [
        f"{env}: {budget_text(env, steps)}"
        for env, steps in budgets(runs, envs).items()
        if math.isfinite(steps)
    ]
    versions_text = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "trpo-bench")
    lines = [
        "# Reproducing Schulman et al. 2015: the paper's claims, decided",
        "",
        f"Generated by `{command}` from a real run of `{grid_file}`; every file in this folder "
        f"but `{DISCUSSION}` is rewritten by that command.",
        "",
        markdown_table(
            pd.DataFrame(
                {
                    "": [
                        "commit of the runs",
                        "commit of this page",
                        "grid",
                        "runs",
                        "budget per run",
                        "machine",
                        "software",
                        "time",
                    ],
                    " ": [
                        commit_text,
                        f"`{git_commit()}` (the tables, verdicts and figures are recomputed "
                        "from the run folders by this commit's code)",
                        f"`{grid_file}`: {', '.join(grid['methods'])} on {', '.join(envs)}; "
                        f"seeds {', '.join(map(str, grid['seeds']))}",
                        f"{done} of {len(runs)} planned runs completed",
                        "; ".join(budget_lines),
                        machine_text(),
                        versions_text,
                        wall_time_text(results),
                    ],
                }
            )
        ),
        "",
        "## The claims",
        "",
        "Each claim of sec. 8.1 is written as data in the grid (`claims`) and decided over seeds "
        "by the probability of improvement P(first > second) with a 95% stratified bootstrap "
        "interval: it **holds** when the interval lies above 0.5 (for an 'alike' claim: inside "
        "0.5 ± the margin), **fails** when it lies on the wrong side, and is **undecided** "
        "otherwise (with the seeds that would decide it). The yardstick is the evaluation "
        "protocol, the same for every method (`trpo_bench/run/evaluation.py`): the final policy "
        "acting deterministically on 5 fixed episodes (its forward reward where a claim says "
        "forward progress), not counted in the budget.",
        "",
    ]
    for claim in grid.get("claims", []):
        lines += _claim_section(claim, by_claim.get(str(claim["id"])), comparisons)
    discussion = out / DISCUSSION
    if discussion.exists():
        lines += ["## Why: what we measured about each outcome", ""]
        lines += [f"See [{DISCUSSION}]({DISCUSSION}), kept by hand beside this page.", ""]
    lines += ["## Figures", ""]
    for name in figures:
        lines += [f"![{name}]({name})", ""]
    lines += [
        "## Tables",
        "",
        "- [claims.md](claims.md): every comparison, the aggregate IQM of normalised scores",
        "- [comparison.md](comparison.md): per env and method, final and average evaluation "
        "return with the published numbers beside ours",
        "- CSV: " + ", ".join(f"[{n}]({n})" for n in COPIED_TABLES if n.endswith(".csv")),
        "",
    ]
    page = out / "README.md"
    page.write_text("\n".join(lines))
    return page
