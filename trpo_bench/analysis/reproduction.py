"""The reproduction report: one page that says, claim by claim, what a real run reproduced.

:func:`write_report` turns a finished grid's results folder (its tables, claims and plots, as
the workflow wrote them) into a folder of small files meant to be committed (Markdown, CSV,
PNG): ``README.md`` states the commit the runs came from, the grid, the machine and the wall
time, then each claim with the paper's words beside our verdict and the comparisons behind it.
``discussion.md`` (why a claim failed or stayed undecided) is rendered from the folder's
``discussion.template.md``, whose every result is a placeholder read from the folder's tables
(:mod:`trpo_bench.analysis.prose`); a folder without a template keeps a hand-written one.
:func:`refresh_report` re-decides a committed page from its own run table with this commit's
statistics, where the run folders are no longer at hand.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trpo_bench.analysis.baseline_rounds import ROUND_ONE, rounds_section
from trpo_bench.analysis.claims import YARDSTICK_LABELS, format_p
from trpo_bench.analysis.committed_runs import read_committed
from trpo_bench.analysis.prose import render
from trpo_bench.analysis.seed_stability import FOLDER as STABILITY
from trpo_bench.analysis.seed_stability import read_reruns, stability_section
from trpo_bench.analysis.tables import budget_text, budgets, markdown_table
from trpo_bench.run.provenance import git_commit, is_dirty, machine_text

DISCUSSION = "discussion.md"
DISCUSSION_TEMPLATE = "discussion.template.md"
LONG_RUNS = "long/runs"  # config/long.yaml's committed runs (trpo_bench.analysis.long_runs)
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
    if "yardstick" not in rows:
        rows = rows.assign(yardstick="deterministic", p_rank=math.nan, p_holm=math.nan)
        rows = rows.assign(p_rank_exact=True, agreement=math.nan)
    label = verdict["verdict"] if verdict is not None else "not decided (no comparisons)"
    lines = [
        f"### Claim {cid}: {claim.get('statement', '')}",
        "",
    ]
    note = str((verdict or {}).get("yardstick_note") or "")
    if note and note != "nan":
        detail = note.removeprefix("the verdict changes with the yardstick: ")
        lines += [f"**The verdict changes with the yardstick:** {detail}.", ""]
    lines += [
        f"- **The paper:** {claim.get('paper', '(no quote given)')}",
        f"- **Here: {label.upper()}**" + (f" ({verdict['counts']})" if verdict is not None else ""),
    ]
    per_env = str((verdict or {}).get("per_env") or "")
    if per_env and per_env != "nan":
        lines.append(f"- **Per env:** {per_env}")
    lines += [
        f"- Compared: `{claim['metric']}`, "
        + ("alike within the margin" if claim.get("kind") == "similar" else "better beats worse"),
        "",
    ]
    primary = rows[rows["yardstick"] == "deterministic"]
    if len(primary):
        shown = pd.DataFrame(
            {
                "scope": primary["scope"],
                "comparison": [
                    f"{b} {'~' if k == 'similar' else '>'} {w}"
                    for b, w, k in zip(
                        primary["better"], primary["worse"], primary["kind"], strict=True
                    )
                ],
                "seeds": primary["seeds"],
                "P(first > second) [CI]": [
                    _p(p, lo, hi)
                    for p, lo, hi in zip(
                        primary["p_improvement"], primary["ci_low"], primary["ci_high"], strict=True
                    )
                ],
                "rank-test p": [
                    _rank(p, e, h)
                    for p, e, h in zip(
                        primary["p_rank"], primary["p_rank_exact"], primary["p_holm"], strict=True
                    )
                ],
                "verdict": primary["verdict"],
                "seeds agreeing": [
                    f"{a:.0%}" if math.isfinite(a) else "" for a in primary["agreement"]
                ],
                "detail": primary["detail"].fillna(""),
            }
        )
        lines += [markdown_table(shown), ""]
    others = [y for y in ("sampled", "training") if (rows["yardstick"] == y).any()]
    if others:
        lines += [
            "On the other yardsticks (P [CI] and verdict; "
            + "; ".join(f"{y}: {YARDSTICK_LABELS[y]}" for y in others)
            + "):",
            "",
        ]
        key = ["scope", "better", "worse"]
        wide = primary[key].copy()
        kinds = list(primary["kind"])
        for y in others:
            part = rows[rows["yardstick"] == y]
            texts = {
                (
                    r.scope,
                    r.better,
                    r.worse,
                ): f"{_p(r.p_improvement, r.ci_low, r.ci_high)} {r.verdict}"
                for r in part.itertuples()
            }
            wide[y] = [texts.get(k, "") for k in zip(*(wide[c] for c in key), strict=True)]
        wide.insert(
            1,
            "comparison",
            [
                f"{b} {'~' if k == 'similar' else '>'} {w}"
                for b, w, k in zip(wide["better"], wide["worse"], kinds, strict=True)
            ],
        )
        lines += [markdown_table(wide.drop(columns=["better", "worse"])), ""]
    return lines


def _rank(p: float, exact: bool, holm: float) -> str:
    if not math.isfinite(p):
        return ""
    return f"{'' if exact else '≈'}{format_p(p)} (Holm {format_p(holm)})"


def _p(point: float, low: float, high: float) -> str:
    if not math.isfinite(point):
        return ""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{point:.2f}"
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


HEADER_KEYS = (
    "commit of the runs",
    "commit of this page",
    "grid",
    "runs",
    "budget per run",
    "evaluation",
    "machine",
    "software",
    "time",
)
PAGE_COMMIT = "commit of this page"
SIBLING_PAGES = (
    ("long.md", "the long runs: swimmer at Table 2's full budget, Pong for 2M env steps"),
    ("ablations.md", "the ablations: each explanation of discussion.md tested by runs"),
)


def _header_rows(
    results: Path, runs: pd.DataFrame, grid: Mapping[str, Any], grid_file: str, envs: Sequence[str]
) -> dict[str, str]:
    """The page's header, from the run folders' summaries (commits, versions, machine)."""
    summaries = _summaries(results / "runs")
    commits = sorted({str(s.get("git_commit", "unknown")) for s in summaries})
    machines = sorted({str(s["machine"]) for s in summaries if s.get("machine")})
    versions = summaries[0].get("versions", {}) if summaries else {}
    commit_text = ", ".join(f"`{c}`" for c in commits) or "unknown"
    if len(commits) > 1:
        commit_text += " — **the runs come from more than one commit: not one experiment**"
    if any(is_dirty(c) for c in commits):
        commit_text += " — **run from a tree with uncommitted changes**"
    return {
        "commit of the runs": commit_text,
        **_table_rows(runs, grid, grid_file, envs),
        "evaluation": evaluation_text(summaries),
        # the runs' own record where they have one; else the machine writing the page
        "machine": "; ".join(machines) or machine_text(),
        "software": ", ".join(f"{k} {v}" for k, v in versions.items() if k != "trpo-bench"),
        "time": wall_time_text(results),
    }


def evaluation_text(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The header's evaluation row: the episodes per evaluation the runs' configs give."""
    episodes = sorted({int(s["config"]["eval_episodes"]) for s in summaries
                       if "eval_episodes" in s.get("config", {})})  # fmt: skip
    if not episodes:
        return "unknown"
    n = " or ".join(map(str, episodes))
    return (
        f"{n} episodes on fixed seeds, deterministic actions (and {n} sampled for the gradient "
        "methods), not counted in the budget; the final score is the last evaluation's mean"
    )


def _table_rows(
    runs: pd.DataFrame, grid: Mapping[str, Any], grid_file: str, envs: Sequence[str]
) -> dict[str, str]:
    """The header rows the run table and the grid say: the grid, the runs, the budgets."""
    done = int((runs["status"] == "completed").sum())
    budget_lines = [
        f"{env}: {budget_text(env, steps)}"
        for env, steps in budgets(runs, envs).items()
        if math.isfinite(steps)
    ]
    return {
        "grid": f"`{grid_file}`: {', '.join(grid['methods'])} on {', '.join(envs)}; "
        f"seeds {', '.join(map(str, grid['seeds']))}",
        "runs": f"{done} of {len(runs)} planned runs completed",
        "budget per run": "; ".join(budget_lines),
    }


def _read_header(page: Path) -> dict[str, str]:
    """The header table of a page written by :func:`_write_page` (key -> value)."""
    rows = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] in HEADER_KEYS:
            rows[cells[0]] = cells[1]
    return rows


def render_discussion(out: Path, extra: Mapping[str, pd.DataFrame] | None = None) -> Path | None:
    """``out/discussion.md`` from ``out/discussion.template.md`` (trpo_bench.analysis.prose:
    every result in it read from the folder's tables); None where there is no template (a
    hand-written discussion.md is then kept as it is)."""
    template = out / DISCUSSION_TEMPLATE
    if not template.exists():
        return None
    tables: dict[str, pd.DataFrame] = {
        "runs": pd.read_csv(out / "runs.csv"),
        "comparisons": pd.read_csv(out / "claims_comparisons.csv", dtype={"claim": str}),
        "claims": pd.read_csv(out / "claims.csv", dtype={"claim": str}),
    }
    if (out / "ablations.csv").exists():
        tables["ablations"] = pd.read_csv(out / "ablations.csv")
    if reruns := read_reruns(out):
        tables["stability"] = pd.concat(reruns.values(), ignore_index=True)
    if (out / LONG_RUNS).is_dir():
        tables["long"] = read_committed(out / LONG_RUNS, progress=False)[0]
    for linked in sorted((out / LONG_RUNS).parent.glob("*/runs")):  # the long grid's linked grids
        tables[f"long/{linked.parent.name}"] = read_committed(linked, progress=False)[0]
    tables |= dict(extra or {})
    text = render(template.read_text(encoding="utf-8"), tables)
    note = (
        f"<!-- generated from {DISCUSSION_TEMPLATE} by trpo_bench.analysis.prose: edit that -->\n"
    )
    (out / DISCUSSION).write_text(note + text)
    return out / DISCUSSION


def _write_page(
    out: Path,
    header: Mapping[str, str],
    grid: Mapping[str, Any],
    command: str,
    grid_file: str,
) -> Path:
    verdicts = pd.read_csv(out / "claims.csv", dtype={"claim": str})
    comparisons = pd.read_csv(out / "claims_comparisons.csv", dtype={"claim": str})
    by_claim = {str(r["claim"]): r for r in verdicts.to_dict("records")}
    figures = sorted(p.name for p in out.glob("*.png") if not p.name.startswith("long-"))
    rows = {**header, PAGE_COMMIT: f"`{git_commit()}` (the tables, verdicts and figures are "
            "recomputed from the run folders by this commit's code)"}  # fmt: skip
    lines = [
        "# Reproducing Schulman et al. 2015: the paper's claims, decided",
        "",
        f"Generated by `{command}` from a real run of `{grid_file}`; every file in this folder "
        f"but `{DISCUSSION_TEMPLATE}`, `{ROUND_ONE}` and `{STABILITY}/` (data kept from other "
        "runs) is rewritten by that command.",
        "",
        markdown_table(
            pd.DataFrame(
                {"": list(HEADER_KEYS), " ": [rows.get(k, "unknown") for k in HEADER_KEYS]}
            )
        ),
        "",
        "Per-seed numbers depend on the machine: float rounding differs between CPUs and grows "
        "over training, so a run repeated on another CPU ends elsewhere, as a run on another "
        "seed does (same seed, same machine, same numbers). The verdicts, not single runs, are "
        "what must hold; where one env's part of the grid was run again on other seeds, the "
        "page sets its verdicts beside these (below, after the claims).",
        "",
        "## The claims",
        "",
        "Each claim of sec. 8.1 is written as data in the grid (`claims`) and decided over seeds "
        "by the probability of improvement P(first > second) with a 95% stratified bootstrap "
        "interval: it **holds** when the interval lies above 0.5 (for an 'alike' claim: inside "
        "0.5 ± the margin), **fails** when it lies on the wrong side, and is **undecided** "
        "otherwise (with the seeds that would decide it). Beside each interval: the two-sided "
        "rank-test p (a permutation test of the same statistic, exact where the splits can be "
        "enumerated; ≈ where 20,000 random splits were drawn) with Holm's adjustment for the "
        "comparisons the claim makes, and the share "
        "of 10 bootstrap seeds that give the same verdict. The verdict is that of the claim's "
        "own yardstick, the final policy acting deterministically on the fixed episodes of the "
        "evaluation protocol (the header's evaluation row; `trpo_bench/run/evaluation.py`; its "
        "forward reward where a claim "
        "says forward progress), not counted in the budget; a claim on a return is also "
        "decided on the sampled evaluation and on the training return (the paper's Figure 4), "
        "and says so at its top where they disagree.",
        "",
    ]
    for claim in grid.get("claims", []):
        lines += _claim_section(claim, by_claim.get(str(claim["id"])), comparisons)
    lines += rounds_section(out, pd.read_csv(out / "runs.csv"))
    lines += stability_section(read_reruns(out), comparisons)
    pages = [(n, t) for n, t in SIBLING_PAGES if (out / n).exists()]
    if (out / DISCUSSION).exists():
        pages.insert(0, (DISCUSSION, "why each claim came out as it did"))
    if pages:
        lines += ["## Why, and what was tested", ""]
        lines += [f"- [{n}]({n}): {t}" for n, t in pages]
        lines += [""]
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
    for path in plots.glob("*.png"):
        shutil.copyfile(path, out / path.name)
    runs = pd.read_csv(tables / "runs.csv")
    render_discussion(out)
    return _write_page(
        out, _header_rows(results, runs, grid, grid_file, envs), grid, command, grid_file
    )


def refresh_report(
    out: str | Path,
    grid: Mapping[str, Any],
    grid_file: str,
    command: str,
    normalization: Mapping[str, Mapping[str, float]],
) -> Path:
    """Re-decide a committed page's claims from its own ``runs.csv`` and ``comparison.csv``
    with this commit's statistics (trpo_bench.analysis.claims_tables), re-render its
    discussion and rewrite the page, keeping its header (the runs' commit, machine, software
    and time, which only the run folders know) but for the page's own commit."""
    from trpo_bench.analysis.claims_tables import decide_claims

    out = Path(out)
    runs = pd.read_csv(out / "runs.csv")
    table = pd.read_csv(out / "comparison.csv", keep_default_na=False, na_values=[""])
    envs = list(dict.fromkeys(runs["env"]))
    decided = decide_claims(
        runs,
        table,
        grid.get("claims", []),
        envs,
        list(dict.fromkeys(runs["method"])),
        grid.get("analysis", {}),
        normalization,
        f"The paper's claims: {grid.get('experiment', '')}",
    )
    (out / "claims.md").write_text(decided.markdown)
    decided.results.to_csv(out / "claims_comparisons.csv", index=False)
    decided.verdicts.to_csv(out / "claims.csv", index=False)
    decided.iqm.to_csv(out / "iqm.csv", index=False)
    decided.profile.savefig(out / "performance_profile.png", dpi=150)
    # What only the run folders knew (commits, machine, software, time) stays as the page
    # said; what the run table holds is said anew.
    header = {**_read_header(out / "README.md"), **_table_rows(runs, grid, grid_file, envs)}
    render_discussion(out)
    return _write_page(out, header, grid, command, grid_file)
