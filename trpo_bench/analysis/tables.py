"""Comparison tables and learning curves from run folders (the workflow's aggregation step).

Everything here is a pure function of DataFrames, except :func:`load_runs`, which reads the run
folders (``summary.json``, ``progress.csv``) named by the planned grid. The figures:

* **final return**: the run's last measured average episode return (``summary.json``);
* **average return**: the mean of the per-iteration average return over all iterations
  (rllab's metric, Duan et al. 2016), which rewards learning fast as well as well;
* the mean of each over seeds, with a percentile bootstrap confidence interval over seeds
  drawn from an explicitly seeded generator (same inputs -> same interval).

A planned run that is missing, failed, or never finished an episode is never averaged away: it
is counted in ``seeds_planned`` but not ``seeds_done``, named in ``notes``, and listed by
:func:`problems`. Sweeps (e.g. the natural gradient's step size, sec. 8.1) are reduced to the
best value per env, as the paper did, and the table says which value won and what was tried.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trpo_bench.config import load_preset
from trpo_bench.variants import format_value

RUN_KEYS = ["env", "method", "variant"]
STATUS_DONE = "completed"

QUICK_LOOK_SHARE = 0.1
"""Below this share of the paper's sample budget, a comparison table says it is a quick look."""

# The yardsticks a table can use (the grid's ``analysis.metric``): each names the summary.json
# figures that become the table's "final" and "average" return and the progress.csv column of
# the learning curves.
YARDSTICKS: dict[str, dict[str, str]] = {
    "eval": {
        "final": "final_eval_return",
        "average": "average_eval_return",
        "curve": "eval_return_mean",
        "label": "evaluation return (the policy acting deterministically on fixed seeds, "
        "trpo_bench.run.evaluation; the same protocol for every method)",
    },
    "train": {
        "final": "final_return",
        "average": "average_return",
        "curve": "return_mean",
        "label": "training return (the episodes of each iteration's batch: a gradient "
        "method's stochastic policy, a search's mean acting deterministically)",
    },
}
# Every figure a run's summary.json gives the analysis (claims may name any of them).
RUN_FIGURES = (
    "final_return",
    "average_return",
    "best_return",
    "final_eval_return",
    "average_eval_return",
    "best_eval_return",
    "final_eval_sampled_return",
    "final_forward_reward",
    "final_x_distance",
    "env_steps",
    "wall_time_s",
)


# --- reading run folders (the only I/O here) --------------------------------------------------


def load_runs(
    planned: Iterable[Mapping[str, Any]], metric: str = "eval"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read each planned run's folder: one row per run, and the stacked progress rows.

    ``planned`` holds records with env, method, variant, seed, sweep and folder
    (``trpo_bench.grid.expected_runs_records``). A run without ``summary.json`` is ``missing``.
    ``metric`` picks the yardstick (:data:`YARDSTICKS`): its figures become the runs'
    ``final_return`` and ``average_return`` and its progress column the curves'
    ``return_mean`` (rows without a value, e.g. iterations between evaluations, are left out);
    the training figures stay available as ``final_train_return`` and
    ``average_train_return``.
    """
    rows, curves = [], []
    for rec in planned:
        try:
            figures, curve = _read_run(Path(rec["folder"]), metric)
        except (OSError, ValueError, KeyError, TypeError) as e:
            # A corrupt file is named and the run left out; the other runs' tables still appear.
            figures, curve = {**run_figures(None, metric), "status": "unreadable"}, None
            figures["problem"] = f"{type(e).__name__}: {e}"
        rows.append({**_run_key(rec), **figures})
        if curve is not None:
            curves.append(curve.assign(**_run_key(rec)))
    runs = pd.DataFrame(rows)
    progress = (
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame(columns=[*RUN_KEYS, "seed", "iteration", "env_steps", "return_mean"])
    )
    return runs, progress


def _read_run(folder: Path, metric: str) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One run folder's figures and learning curve (None without one); raises on a file that
    cannot be read (truncated JSON, a non-numeric progress value), naming it."""
    summary_path, progress_path = folder / "summary.json", folder / "progress.csv"
    summary = None
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError as e:
            raise ValueError(f"{summary_path} is not valid JSON ({e})") from None
    figures = run_figures(summary, metric)
    column = YARDSTICKS[metric]["curve"]
    if summary is None or not progress_path.exists():
        return figures, None
    progress = pd.read_csv(progress_path)
    if column not in progress:
        return figures, None
    curve = progress[["iteration", "env_steps", column]].rename(columns={column: "return_mean"})
    try:
        values = curve.astype(float)
    except ValueError as e:
        raise ValueError(f"{progress_path} holds a non-numeric value ({e})") from None
    return figures, values[np.isfinite(values["return_mean"].to_numpy())].astype({"iteration": int})


def _run_key(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "env": rec["env"],
        "method": rec["method"],
        "variant": rec["variant"],
        "seed": int(rec["seed"]),
        "sweep": json.dumps(rec.get("sweep") or {}, sort_keys=True),
    }


def run_figures(summary: Mapping[str, Any] | None, metric: str = "eval") -> dict[str, Any]:
    """One run's status and figures from its summary.json (``None``: the run is missing).

    ``final_return`` and ``average_return`` are the ``metric`` yardstick's (:data:`YARDSTICKS`);
    every figure of :data:`RUN_FIGURES` is kept, the training ones as ``*_train_return``.
    """
    summary = summary or {}

    def num(key: str) -> float:
        value = summary.get(key)
        return float(value) if value is not None else math.nan

    figures: dict[str, Any] = {key: num(key) for key in RUN_FIGURES}
    figures["run_notes"] = "; ".join(str(n) for n in summary.get("notes") or [])
    figures["final_train_return"] = figures["final_return"]
    figures["average_train_return"] = figures["average_return"]
    yardstick = YARDSTICKS[metric]
    figures["final_return"] = num(yardstick["final"])
    figures["average_return"] = num(yardstick["average"])
    status = str(summary.get("status", "unknown")) if summary else "missing"
    if status == STATUS_DONE and not math.isfinite(figures["final_return"]):
        status = "no-return"  # completed, but no episode ever ended: nothing to average
    return {"status": status, **figures}


def paper_budget(env: str) -> int | None:
    """The env steps of one run at the paper's budget (``--preset paper``: Table 2's for
    swimmer, hopper and walker, Table 3's single path for Atari, ours for cart-pole)."""
    paper = (load_preset("envs").get(env) or {}).get("paper") or {}
    if "iterations" not in paper or "steps_per_iter" not in paper:
        return None
    return int(paper["iterations"]) * int(paper["steps_per_iter"])


def budget_is_ours(env: str) -> bool:
    """Whether the ``paper`` preset's budget of ``env`` is this project's (the paper gives
    none: cart-pole; an env not in the paper), from envs.yaml's ``budget_source``."""
    return (load_preset("envs").get(env) or {}).get("budget_source", "paper") == "ours"


def budget_text(env: str, env_steps: float) -> str:
    """A run's budget as a share of the paper's: ``250K steps (0.12% of the paper's 200M)``;
    where the paper gives none, of our preset's: ``500K steps (25% of our preset's 2M; the
    paper gives none)``."""
    if not math.isfinite(env_steps):
        return ""
    text = f"{_steps(env_steps)} steps"
    paper = paper_budget(env)
    if paper:
        share = 100.0 * env_steps / paper
        whose = "our preset's" if budget_is_ours(env) else "the paper's"
        tail = "; the paper gives none" if budget_is_ours(env) else ""
        shown = f"{share:.0f}" if share >= 10 else f"{share:.2g}"
        text += f" ({shown}% of {whose} {_steps(paper)}{tail})"
    return text


def _steps(n: float) -> str:
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


# --- statistics ---------------------------------------------------------------------------------


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    confidence: float = 0.95,
    samples: int = 10_000,
    seed: int = 0,
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Percentile bootstrap interval of the mean over the first axis (seeds).

    ``values`` is (seeds,) or (seeds, points); NaNs are left out of each resample's mean.
    Each resample draws ``seeds`` indices with replacement from ``np.random.default_rng(seed)``,
    so the interval is reproducible. With fewer than two finite values the interval is NaN:
    one seed says nothing about the spread.
    """
    x = np.asarray(values, dtype=float)
    scalar = x.ndim == 1
    x = x[:, None] if scalar else x
    n = x.shape[0]
    valid = np.isfinite(x)
    low = np.full(x.shape[1], np.nan)
    high = np.full(x.shape[1], np.nan)
    enough = valid.sum(axis=0) >= 2
    if n and enough.any():
        rng = np.random.default_rng(seed)
        # Counts of each seed in each resample: (samples, n); the resampled means of every
        # column at once are then two matrix products.
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (counts @ np.where(valid, x, 0.0)) / (counts @ valid)
        alpha = (1.0 - confidence) / 2.0
        lo, hi = np.nanquantile(means[:, enough], [alpha, 1.0 - alpha], axis=0)
        low[enough], high[enough] = lo, hi
    if scalar:
        return float(low[0]), float(high[0])
    return low, high


def summarize(
    runs: pd.DataFrame, confidence: float = 0.95, samples: int = 10_000, seed: int = 0
) -> pd.DataFrame:
    """Per env x method x variant: seeds planned and done, final and average return (mean over
    completed seeds and bootstrap CI), env steps and wall time (mean per run), and notes naming
    every seed that is missing, failed or without a return."""
    out = []
    for (env, method, variant), g in runs.groupby(RUN_KEYS, sort=False):
        done = g[g["status"] == STATUS_DONE]
        row: dict[str, Any] = {
            "env": env,
            "method": method,
            "variant": variant,
            "sweep": g["sweep"].iloc[0],
            "seeds_planned": len(g),
            "seeds_done": len(done),
        }
        for metric in ("final_return", "average_return"):
            vals = done[metric].to_numpy(float)
            row[f"{metric}_mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_ci(
                vals, confidence, samples, seed
            )
        row["env_steps"] = float(done["env_steps"].mean()) if len(done) else math.nan
        row["wall_time_s"] = float(done["wall_time_s"].mean()) if len(done) else math.nan
        notes = [
            f"seed {s} {st}"
            for s, st in zip(g["seed"], g["status"], strict=True)
            if st != STATUS_DONE
        ]
        # What the runs themselves noted (e.g. a search budget that cut episodes short), once.
        if "run_notes" in g:
            notes += list(dict.fromkeys(n for n in g["run_notes"] if isinstance(n, str) and n))
        row["notes"] = "; ".join(notes)
        out.append(row)
    return pd.DataFrame(out)


def problems(runs: pd.DataFrame) -> pd.DataFrame:
    """The planned runs that did not complete with a return (missing, failed, no-return,
    unreadable: its status then says which file and why)."""
    bad = runs.loc[runs["status"] != STATUS_DONE, [*RUN_KEYS, "seed", "status"]].copy()
    if "problem" in runs:
        why = runs.loc[bad.index, "problem"]
        bad["status"] = [
            f"{s} ({w})" if isinstance(w, str) and w else s
            for s, w in zip(bad["status"], why, strict=True)
        ]
    return bad.reset_index(drop=True)


def select_best(summary: pd.DataFrame, by: str = "final_return") -> pd.DataFrame:
    """One row per env x method: the variant with the highest mean ``by`` over its completed
    seeds (the paper kept the best step size of the natural gradient's sweep). ``choice``
    says which value won among which, e.g. ``best of step_size in {0.01, 0.03, 0.1} by final
    return: step_size=0.1``; it is empty for methods without a sweep."""
    out = []
    for (_env, _method), g in summary.groupby(["env", "method"], sort=False):
        ranked = g.sort_values(f"{by}_mean", ascending=False, na_position="last", kind="stable")
        best = ranked.iloc[0].to_dict()
        best["choice"] = ""
        if len(g) > 1:
            sweeps = [json.loads(s) for s in g["sweep"]]
            tried = {k: sorted({s[k] for s in sweeps}, key=_sort_key) for k in sweeps[0]}
            tried_text = ", ".join(
                f"{k} in {{{', '.join(map(format_value, v))}}}" for k, v in tried.items()
            )
            won = ", ".join(f"{k}={format_value(v)}" for k, v in json.loads(best["sweep"]).items())
            if math.isnan(best[f"{by}_mean"]):
                won = "none (no variant completed)"
            best["choice"] = f"best of {tried_text} by {by.replace('_', ' ')}: {won}"
        out.append(best)
    return pd.DataFrame(out)


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float) and not isinstance(v, bool) else (1, str(v))


BUDGET_FACTOR = 2.0
"""A published number sits beside ours as comparable only when our runs' env steps are within
this factor of the budget behind it (and the task's reward is on the same scale)."""


def published_meta(entry: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """What a published number was measured at: ``task`` (the task and its version),
    ``budget_steps`` (env steps behind the number, None where not published) and
    ``other_scale`` (why its return is on another scale than ours, or ""). Each comes from the
    entry, else from ``reference['published_at'][source]`` (``budget_steps`` there may map
    methods to budgets, e.g. the vine's larger batches)."""
    at = (reference.get("published_at") or {}).get(entry["source"]) or {}
    budget = entry.get("budget_steps", at.get("budget_steps"))
    if isinstance(budget, Mapping):
        budget = budget.get(entry["method"])
    task = entry.get("task", at.get("task", ""))
    return {
        "task": str(task).format(env=entry["env"].removesuffix("-v5")) if task else "",
        "budget_steps": int(budget) if budget is not None else None,
        "other_scale": str(entry.get("other_scale", at.get("other_scale", "")) or ""),
    }


def published_text(entry: Mapping[str, Any], reference: Mapping[str, Any] | None = None) -> str:
    """One published number as shown in the table, with what it was measured at:
    ``20.9 (final; trpo-table1; ALE Pong (2015); 50M steps)``."""
    meta = published_meta(entry, reference or {})
    value = f"{entry['value']:g}"
    if entry.get("spread") is not None:
        value += f" ± {entry['spread']:g}"
    metric = "avg over iterations" if entry["metric"] == "average_return" else "final"
    where = [metric, entry["source"]]
    if meta["task"]:
        where.append(meta["task"])
    if meta["budget_steps"]:
        where.append(f"{_steps(meta['budget_steps'])} steps")
    return f"{value} ({'; '.join(where)})"


def comparability(
    entry: Mapping[str, Any], our_steps: float, reference: Mapping[str, Any]
) -> tuple[bool, str]:
    """Whether a published number compares with our runs of ``our_steps`` env steps, and if
    not, why (one phrase). Not comparable: a return on another scale (another task or reward:
    rllab's Cart-Pole scores up to about 5,000, InvertedPendulum-v5 at most 1,000), or a budget
    more than :data:`BUDGET_FACTOR` away from ours (Table 1's Pong 20.9 after 50M steps beside a
    40K-step run), or a budget that was not published."""
    meta = published_meta(entry, reference)
    if meta["other_scale"]:
        return False, f"another scale: {meta['other_scale']}"
    budget = meta["budget_steps"]
    if not budget:
        return False, "its budget is not published"
    if not math.isfinite(our_steps):
        return False, "no completed run of ours"
    ratio = our_steps / budget
    if 1 / BUDGET_FACTOR <= ratio <= BUDGET_FACTOR:
        return True, ""
    share = f"{100 * ratio:.0f}%" if ratio >= 0.1 else f"{100 * ratio:.2g}%"
    return False, (
        f"other budget: {_steps(budget)} steps there, {_steps(our_steps)} here ({share} of it)"
    )


def not_comparable_text(entry: Mapping[str, Any], why: str, reference: Mapping[str, Any]) -> str:
    """A published entry that does not compare with ours: marked, and without its number where
    the scales differ (a number on another scale beside ours only misleads)."""
    if why.startswith("another scale"):
        meta = published_meta(entry, reference)
        task = meta["task"] or entry["env"]
        return f"NOT COMPARABLE: {task}, {entry['source']} ({why}; number left out)"
    return f"NOT COMPARABLE: {published_text(entry, reference)} ({why})"


def comparison(
    best: pd.DataFrame, reference: Mapping[str, Any], envs: Sequence[str]
) -> pd.DataFrame:
    """Our best variant per env x method with the published numbers beside it.

    ``reference`` is config/reference.yaml's data (``sources``, ``published_at`` and
    ``entries``). ``published`` holds the entries that compare with our runs (same reward
    scale, a budget within :data:`BUDGET_FACTOR` of ours), each with its metric, task and
    budget; ``published_not_comparable`` the others, marked and saying why
    (:func:`comparability`). Published entries of a method that is not in our grid, on an env
    that is (random, human, DQN), come as extra rows with empty figures of ours
    (``seeds_planned`` 0).
    """
    entries = [e for e in reference.get("entries", []) if e["env"] in envs]
    table = best.copy()
    comparable, other = [], []
    for env, method, steps in zip(table["env"], table["method"], table["env_steps"], strict=True):
        yes, no = [], []
        for e in entries:
            if (e["env"], e["method"]) != (env, method):
                continue
            ok, why = comparability(e, float(steps), reference)
            if ok:
                yes.append(published_text(e, reference))
            else:
                no.append(not_comparable_text(e, why, reference))
        comparable.append("; ".join(yes))
        other.append("; ".join(no))
    table["published"] = comparable
    table["published_not_comparable"] = other
    ours = set(zip(table["env"], table["method"], strict=True))
    extra: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        if (e["env"], e["method"]) not in ours:
            extra.setdefault((e["env"], e["method"]), []).append(published_text(e, reference))
    extra_rows = pd.DataFrame(
        [
            {
                "env": env,
                "method": method,
                "variant": "",
                "seeds_planned": 0,
                "seeds_done": 0,
                "published": "; ".join(texts),
                "published_not_comparable": "",
                "notes": "published only",
            }
            for (env, method), texts in extra.items()
        ]
    )
    table = pd.concat([table, extra_rows], ignore_index=True) if len(extra_rows) else table
    order = {env: i for i, env in enumerate(envs)}
    table = table.sort_values("env", key=lambda s: s.map(order), kind="stable")
    columns = [
        "env",
        "method",
        "variant",
        "choice",
        "seeds_planned",
        "seeds_done",
        "final_return_mean",
        "final_return_ci_low",
        "final_return_ci_high",
        "average_return_mean",
        "average_return_ci_low",
        "average_return_ci_high",
        "env_steps",
        "wall_time_s",
        "published",
        "published_not_comparable",
        "notes",
    ]
    return table.reindex(columns=columns).reset_index(drop=True)


def reference_levels(reference: Mapping[str, Any], env: str) -> list[tuple[str, float]]:
    """The published reference levels of ``env`` for a figure: a random and a human player's
    score and the paper's TRPO scores (Table 1, for Atari; methods with the same score share
    one level), as (label, value), in that order. Empty for an env without them (MuJoCo)."""
    entries = [e for e in reference.get("entries", []) if e["env"] == env]
    out = [
        (f"{e['method']} {e['value']:g}", float(e["value"]))
        for name in ("random", "human")
        for e in entries
        if e["method"] == name
    ]
    trpo: dict[float, list[str]] = {}
    for e in entries:
        if e["method"].startswith("trpo") and e["source"] == "trpo-table1":
            budget = published_meta(e, reference)["budget_steps"]
            at = f" ({_steps(budget)} steps)" if budget else ""
            trpo.setdefault(float(e["value"]), []).append(
                f"{e['method'].removeprefix('trpo-')}{at}"
            )
    out += [
        (f"paper's TRPO {value:g}:\n{', '.join(names)}", value) for value, names in trpo.items()
    ]
    return out


def curve_grid(progress: pd.DataFrame) -> np.ndarray:
    """A shared env-step grid for one env's curves: multiples of the median spacing between
    consecutive measurements (an iteration's batch, or ``eval_every`` of them), up to the
    furthest measurement. Every method and seed of the env is read at these x values."""
    gaps = [
        np.diff(np.sort(g["env_steps"].to_numpy(float)))
        for _, g in progress.groupby([*RUN_KEYS, "seed"], sort=False)
    ]
    gaps = np.concatenate(gaps) if gaps else np.array([])
    gaps = gaps[gaps > 0]
    end = float(progress["env_steps"].max()) if len(progress) else math.nan
    if not math.isfinite(end) or end <= 0:
        return np.array([])
    step = float(np.median(gaps)) if len(gaps) else end
    count = max(1, round(end / step))
    return step * np.arange(1, count + 1)


def _on_grid(curve: pd.DataFrame, grid: np.ndarray, slack: float) -> np.ndarray:
    """One seed's curve linearly interpolated at ``grid``; NaN outside its measured range
    widened by ``slack`` env steps at each end (where the nearest measurement is held)."""
    c = curve.sort_values("env_steps")
    x, y = c["env_steps"].to_numpy(float), c["return_mean"].to_numpy(float)
    values = np.interp(grid, x, y)
    values[(grid < x[0] - slack) | (grid > x[-1] + slack)] = np.nan
    return values


def learning_curves(
    progress: pd.DataFrame,
    runs: pd.DataFrame,
    confidence: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per env x method x variant, on the env's shared env-step grid (:func:`curve_grid`):
    mean return over the completed seeds with a bootstrap CI.

    Each seed's curve is interpolated linearly onto the grid before averaging, so seeds (and
    methods) whose measurements fall at different env steps (a search's generations overshoot
    an iteration's budget; the vine's branches end early) are averaged at the same x. A grid
    point is kept while every completed seed reaches it, to within half a grid step (the
    curve ends where its shortest seed ends, never on an extrapolated tail); ``seeds``
    counts the seeds averaged there."""
    done = runs.loc[runs["status"] == STATUS_DONE, [*RUN_KEYS, "seed"]]
    progress = progress.merge(done, on=[*RUN_KEYS, "seed"])
    progress = progress[np.isfinite(progress["return_mean"].to_numpy(float))]
    out = []
    for env, per_env in progress.groupby("env", sort=False):
        grid = curve_grid(per_env)
        if not len(grid):
            continue
        slack = 0.5 * float(grid[0])
        for (_env, method, variant), g in per_env.groupby(RUN_KEYS, sort=False):
            x = np.vstack([_on_grid(c, grid, slack) for _, c in g.groupby("seed", sort=True)])
            keep = np.isfinite(x).all(axis=0)
            if not keep.any():
                continue
            x = x[:, keep]
            low, high = bootstrap_ci(x, confidence, samples, seed)
            out.append(
                pd.DataFrame(
                    {
                        "env": env,
                        "method": method,
                        "variant": variant,
                        "env_steps": grid[keep],
                        "return_mean": x.mean(axis=0),
                        "return_ci_low": low,
                        "return_ci_high": high,
                        "seeds": x.shape[0],
                    }
                )
            )
    if not out:
        return pd.DataFrame(
            columns=[
                *RUN_KEYS,
                "env_steps",
                "return_mean",
                "return_ci_low",
                "return_ci_high",
                "seeds",
            ]
        )
    return pd.concat(out, ignore_index=True)


# --- Markdown -------------------------------------------------------------------------------------


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (values already formatted as text)."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in df.columns) + " |",
        "|" + "---|" * len(df.columns),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _num(v: Any, digits: int = 1) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{digits}f}"


def _with_ci(mean: Any, low: Any, high: Any, digits: int = 1) -> str:
    text = _num(mean, digits)
    if text and not math.isnan(low):
        text += f" [{_num(low, digits)}, {_num(high, digits)}]"
    return text


def _ci_column(table: pd.DataFrame, figure: str) -> list[str]:
    """``figure``'s mean with its confidence interval, one cell per row (:func:`_with_ci`)."""
    columns = (table[f"{figure}_{part}"] for part in ("mean", "ci_low", "ci_high"))
    return [_with_ci(m, lo, hi) for m, lo, hi in zip(*columns, strict=True)]


def display_table(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """The comparison table as shown (Markdown and HTML alike): one text cell per figure, the
    budget as a share of the paper's, the published numbers that compare with ours and, marked,
    those that do not."""
    pct = f"{confidence:.0%}"
    not_comparable = (
        table["published_not_comparable"]
        if "published_not_comparable" in table
        else pd.Series("", index=table.index)
    )
    return pd.DataFrame(
        {
            "env": table["env"],
            "method": table["method"],
            "seeds": [
                f"{int(d)}/{int(p)}" if p else ""
                for d, p in zip(table["seeds_done"], table["seeds_planned"], strict=True)
            ],
            f"final return [{pct} CI]": _ci_column(table, "final_return"),
            f"average return [{pct} CI]": _ci_column(table, "average_return"),
            "budget per run": [
                budget_text(env, v) for env, v in zip(table["env"], table["env_steps"], strict=True)
            ],
            "wall time (s)": [_num(v, 0) for v in table["wall_time_s"]],
            "published": [
                "; ".join(t for t in (p, n) if isinstance(t, str) and t)
                for p, n in zip(table["published"], not_comparable, strict=True)
            ],
            "notes": [
                "; ".join(t for t in (c, n) if isinstance(t, str) and t)
                for c, n in zip(table["choice"], table["notes"], strict=True)
            ],
        }
    )


def quick_look_share(table: pd.DataFrame) -> float | None:
    """The largest share of the paper's sample budget among the table's runs, if every run had
    less than :data:`QUICK_LOOK_SHARE` of it (a quick look); else None."""
    shares = [
        v / b
        for env, v in zip(table["env"], table["env_steps"], strict=True)
        if (b := paper_budget(env)) and math.isfinite(v)
    ]
    return max(shares) if shares and max(shares) < QUICK_LOOK_SHARE else None


def yardstick_text(metric: str, confidence: float) -> str:
    """The paragraph above the comparison table: what its figures are."""
    return (
        f"Yardstick: the {YARDSTICKS[metric]['label']}. "
        f"Mean over completed seeds with a {confidence:.0%} percentile bootstrap interval over "
        "seeds. Final return: the final policy's. Average return: the mean over all "
        "measurements during training (rllab's metric). Budget and wall time: per run. A swept "
        "method shows its best value per env (as the paper kept the best natural-gradient "
        "step size); `notes` names it and the values tried. Published numbers appear with "
        "their metric, task and budget where they compare with ours (the same reward scale, a "
        f"budget within a factor of {BUDGET_FACTOR:g} of ours); the others are marked NOT "
        "COMPARABLE with the reason."
    )


def to_markdown(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    reference: Mapping[str, Any],
    confidence: float = 0.95,
    title: str = "trpo-bench comparison",
    metric: str = "eval",
) -> str:
    """The comparison table as a Markdown document: the yardstick and each run's budget as a
    share of the paper's, what each column means, the sweeps' choices, every run that is
    missing or failed, and the published numbers' sources."""
    shown = display_table(table, confidence)
    bad = problems(runs)
    lines = [f"# {title}", ""]
    share = quick_look_share(table)
    if share is not None:
        lines += [
            f"**A quick look, not the paper's experiment: every run here had at most "
            f"{100 * share:.2g}% of the paper's sample budget** (column `budget per run`). "
            "An ordering of methods at such budgets says nothing about the paper's claims; "
            "`claims.md` decides them with statistics, and says `undecided` where these runs "
            "cannot.",
            "",
        ]
    if len(bad):
        lines += [
            f"**{len(bad)} of {len(runs)} planned runs did not complete with a return; the means "
            "below leave them out (see `seeds` and `notes`):**",
            "",
            *[
                f"- {r.env} / {r.variant} / seed {r.seed}: {r.status}"
                for r in bad.itertuples(index=False)
            ],
            "",
        ]
    lines += [
        yardstick_text(metric, confidence),
        "",
        markdown_table(shown),
        "",
    ]
    sources = reference.get("sources", {})
    rows = set(zip(table["env"], table["method"], strict=True))
    used = {e["source"] for e in reference.get("entries", []) if (e["env"], e["method"]) in rows}
    if used:
        lines += ["Published numbers:", ""]
        lines += [f"- `{s}`: {sources[s]}" for s in sources if s in used]
        lines.append("")
    return "\n".join(lines)


# --- the claims' inputs -------------------------------------------------------------------------


def shown_variants(table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(env, method) -> the variant shown, for the comparison table's rows that have runs (a
    swept method's best value per env)."""
    return {
        (row.env, row.method): row.variant
        for row in table.itertuples(index=False)
        if isinstance(row.variant, str) and row.variant
    }


def claim_scores(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """One row per completed run of the variant each (env, method) is shown with in ``table``
    (a swept method's best value, as the paper kept the natural gradient's best step size):
    env, method, seed and every figure of :data:`RUN_FIGURES` (``trpo_bench.analysis.claims``
    input)."""
    shown = shown_variants(table)
    done = runs[runs["status"] == STATUS_DONE]
    keep = [
        shown.get((e, m)) == v
        for e, m, v in zip(done["env"], done["method"], done["variant"], strict=True)
    ]
    columns = [
        "env",
        "method",
        "seed",
        *[c for c in done.columns if c not in (*RUN_KEYS, "seed", "sweep", "status")],
    ]
    return done.loc[keep, columns].reset_index(drop=True)


def budgets(runs: pd.DataFrame, envs: Sequence[str]) -> dict[str, float]:
    """Per env, the mean env steps of its completed runs (NaN if none)."""
    done = runs[runs["status"] == STATUS_DONE]
    return {env: float(done.loc[done["env"] == env, "env_steps"].mean()) for env in envs}


def claims_note(runs: pd.DataFrame, envs: Sequence[str]) -> str:
    """What the claims were decided at: each env's budget per run as a share of the paper's,
    and a plain warning when every budget is a small share of it (a quick look)."""
    per_env = budgets(runs, envs)
    parts = [f"{env}: {budget_text(env, v)}" for env, v in per_env.items() if math.isfinite(v)]
    text = "Budget per run: " + ("; ".join(parts) if parts else "no completed run") + "."
    shares = [v / b for env, v in per_env.items() if (b := paper_budget(env)) and math.isfinite(v)]
    if shares and max(shares) < QUICK_LOOK_SHARE:
        text = (
            f"**A quick look: every run had at most {100 * max(shares):.2g}% of the paper's "
            "sample budget. A verdict here is about these budgets; where the runs cannot "
            "separate the methods it says `undecided`, never an ordering.** " + text
        )
    return text


def iqm_markdown(iqm: pd.DataFrame, metric: str, normalization: Mapping[str, Any]) -> str:
    """The aggregate table: each method's interquartile mean of normalised scores."""
    if iqm.empty:
        return "## Aggregate over envs\n\nNo run of an env with normalisation references.\n"
    shown = pd.DataFrame(
        {
            "method": iqm["method"],
            "IQM of normalised score [CI]": [
                _with_ci(m, lo, hi, 2)
                for m, lo, hi in zip(iqm["iqm"], iqm["ci_low"], iqm["ci_high"], strict=True)
            ],
            "runs": iqm["runs"],
        }
    )
    refs = "; ".join(
        f"{env}: {v['random']:g} / {v['best']:g} ({v.get('best_source', '')})"
        for env, v in normalization.items()
    )
    return "\n".join(
        [
            "## Aggregate over envs",
            "",
            f"`{metric}` normalised per env, random = 0 and the best published TRPO-family "
            "return = 1 (`config/reference.yaml`, `normalization`), then the interquartile mean "
            "over every (env, seed) run of a method, with a stratified bootstrap interval "
            "(seeds redrawn within each env). Only methods run on the same envs compare by it. "
            "The performance profile (`plots/performance_profile.png`) shows the whole "
            "distribution.",
            "",
            markdown_table(shown),
            "",
            f"Random / best per env: {refs}.",
        ]
    )
