"""The paper's claims, decided from per-run scores with stated statistics.

Pure functions of a ``scores`` DataFrame (one row per completed run: ``env``, ``method``,
``seed`` and numeric metric columns; NaN means "no value" and is dropped per metric) and of the
claims of the config (a list of mappings, see :data:`CLAIM_KEYS`). The only output that is not a
DataFrame or a string is :func:`performance_profile_figure`, which returns a Figure unsaved.

The figures, and what each means:

* **P(X > Y)**, the probability of improvement (:func:`probability_of_improvement`): the
  chance that a run of method X, seed drawn at random, scores higher than a run of method Y on
  the same env; estimated over all n x m pairs of seeds, a tie counting one half. It equals
  the Mann-Whitney U statistic divided by n m. 0.5 means no difference; 1 means every seed of
  X beat every seed of Y. It needs no common scale across envs and is not moved by outliers.
* **pooled P** over several envs (:func:`poi_interval`): the mean of the per-env P(X > Y), each
  env weighted equally (as in Agarwal et al. 2021, "Deep RL at the edge of the statistical
  precipice").
* **stratified bootstrap interval**: each resample redraws, within every env (stratum) and
  for every method separately, that method's seeds with replacement, and recomputes the pooled
  P; the interval is the percentile interval of the resamples at ``confidence`` (default 95%),
  drawn from ``np.random.default_rng(seed)``, so the same scores give the same interval. A
  stratum with fewer than 2 seeds on either side says nothing about the spread: the interval
  is then NaN (the point is still given).
* **verdicts** (:func:`verdict`), for a claim of kind ``better`` (the first methods beat the
  second): *holds* if the whole interval lies above 0.5, *fails* if it lies below 0.5, else
  *undecided*; for kind ``similar`` (the methods perform alike): *holds* if the interval lies
  within 0.5 +- ``margin`` (default 0.25, i.e. P between 0.25 and 0.75), *fails* if it lies
  entirely outside on one side, else *undecided*. An undecided verdict says roughly how many
  seeds per method would decide it: the half-width of the interval shrinks like 1/sqrt(n),
  so with n seeds, half-width h and distance d between the point and the line to clear
  (0.5 for ``better``; the margin's edge for ``similar``) about ceil(n (h / d)^2) seeds would
  do, assuming the point and the spread stay as observed (:func:`seeds_needed`).
* **normalised score** (:func:`normalized_scores`): (x - low[env]) / (high[env] - low[env]),
  with low a random policy's score (0) and high the best published one (1).
* **IQM** (:func:`iqm`): the interquartile mean, the mean of the middle half of the runs
  (``scipy.stats.trim_mean(x, 0.25)``: floor(N / 4) runs cut from each end). Robust to a
  diverged seed, yet uses more of the data than the median. :func:`aggregate_iqm` gives it
  per method over all its (env, seed) runs, with a stratified bootstrap interval (seeds
  redrawn within each env).
* **performance profile** (:func:`performance_profile`): per method, the fraction of its runs
  whose normalised score exceeds tau, for each tau; a curve that lies higher is better
  everywhere, and the area under it is the mean normalised score.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from trpo_bench.analysis.tables import markdown_table

CLAIM_KEYS = {
    "id": "a short label, unique among the claims (required)",
    "statement": "the claim in a sentence",
    "paper": "the paper's own words, with the section",
    "envs": "env ids the claim is about (required, one or a list)",
    "better": "the method(s) claimed better, or the first side of a similar claim (required)",
    "worse": "the method(s) claimed worse, or the second side of a similar claim (required)",
    "metric": "the scores column compared, e.g. final_eval_return (required)",
    "kind": "better (default): better beats worse; similar: the two perform alike",
    "per_env": "true (default): decide each env separately as well as pooled",
    "margin": "kind similar only: P(X > Y) within 0.5 +- margin counts as alike; in (0, 0.5)",
}
"""The keys of one claim entry and what each means."""

KINDS = ("better", "similar")
DEFAULT_MARGIN = 0.25
VERDICTS = ("holds", "fails", "undecided")
POOLED = "all"


# --- the statistics ---------------------------------------------------------------------------


def _finite(values: Any) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def _pair_wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, m) matrix: 1 where x_i > y_j, 1/2 where they tie, 0 where x_i < y_j."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Any) -> float:
    """P(X > Y): the fraction of the n x m pairs (x_i, y_j) with x_i > y_j, ties counting 1/2.

    Equal to the Mann-Whitney U statistic of x against y divided by n m. NaNs are dropped;
    NaN if either side has no value.
    """
    xs, ys = _finite(x), _finite(y)
    if not len(xs) or not len(ys):
        return math.nan
    return float(_pair_wins(xs, ys).mean())


def poi_interval(
    xs: Sequence[Any],
    ys: Sequence[Any],
    confidence: float = 0.95,
    samples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Pooled P(X > Y) over strata (envs) and its stratified percentile bootstrap interval.

    ``xs[k]`` and ``ys[k]`` are the two methods' per-seed scores on env k. The point is the
    mean over envs of the per-env P(X > Y). Each of ``samples`` resamples redraws, within each
    env and for each method separately, that method's seeds with replacement (multinomial
    counts from ``np.random.default_rng(seed)``) and recomputes the pooled P. Returns (point,
    low, high); low and high are NaN if any env has fewer than 2 seeds on either side.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs has {len(xs)} strata but ys has {len(ys)}")
    strata = [(_finite(x), _finite(y)) for x, y in zip(xs, ys, strict=True)]
    if not strata or any(not len(x) or not len(y) for x, y in strata):
        return math.nan, math.nan, math.nan
    point = float(np.mean([_pair_wins(x, y).mean() for x, y in strata]))
    if any(len(x) < 2 or len(y) < 2 for x, y in strata):
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    pooled = np.zeros(samples)
    for x, y in strata:
        n, m = len(x), len(y)
        # How often each seed is drawn in each resample: (samples, n) and (samples, m). The
        # resample's P is then sum_ij cx_i w_ij cy_j / (n m), for all resamples at once.
        cx = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(float)
        cy = rng.multinomial(m, np.full(m, 1.0 / m), size=samples).astype(float)
        pooled += ((cx @ _pair_wins(x, y)) * cy).sum(axis=1) / (n * m)
    pooled /= len(strata)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(pooled, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def seeds_needed(seeds: int, half_width: float, distance: float) -> int:
    """Seeds per method at which an interval of ``half_width`` at ``seeds`` seeds would shrink
    to ``distance`` (the half-width goes like 1/sqrt(n)): ceil(seeds (half_width / distance)^2),
    and at least seeds + 1 (the interval did not decide at ``seeds``)."""
    ratio = round(half_width / distance, 9)  # 0.2 / 0.1 must give 2, not 2.0000000000000004
    return max(math.ceil(round(seeds * ratio**2, 9)), seeds + 1)


def _interval_text(low: float, high: float) -> str:
    return f"the interval [{low:.2f}, {high:.2f}]"


def verdict(
    kind: str,
    point: float,
    low: float,
    high: float,
    seeds: int,
    margin: float = DEFAULT_MARGIN,
) -> tuple[str, str]:
    """(verdict, detail) for one comparison, from P(better > worse) and its interval.

    ``better``: holds if low > 0.5, fails if high < 0.5, else undecided. ``similar``: holds if
    [low, high] lies within [0.5 - margin, 0.5 + margin], fails if it lies entirely above or
    entirely below that band, else undecided. ``seeds`` is the fewest seeds per (env, method)
    cell behind the comparison; an undecided detail says how many would decide it
    (:func:`seeds_needed`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown claim kind {kind!r} (allowed: {', '.join(KINDS)})")
    if math.isnan(point):
        return "undecided", "no scores to compare"
    p = f"P = {point:.2f}"
    if math.isnan(low) or math.isnan(high):
        return "undecided", (
            f"{p}; too few seeds for an interval ({seeds} per method; at least 2 needed)"
        )
    interval = _interval_text(low, high)
    half_width = (high - low) / 2.0
    if kind == "better":
        if low > 0.5:
            return "holds", f"{p}; {interval} lies above 0.5"
        if high < 0.5:
            return "fails", f"{p}; {interval} lies below 0.5"
        if point == 0.5:
            return "undecided", f"{p}: no difference observed; {interval} includes 0.5"
        n = seeds_needed(seeds, half_width, abs(point - 0.5))
        return "undecided", (
            f"{p}; {interval} includes 0.5; at the observed spread about {n} seeds per method "
            f"would decide it (now {seeds})"
        )
    lo_edge, hi_edge = 0.5 - margin, 0.5 + margin
    band = f"0.5 +- {margin:.2f}"
    if lo_edge <= low and high <= hi_edge:
        return "holds", f"{p}; {interval} lies within {band}"
    if low > hi_edge:
        return "fails", f"{p}; {interval} lies above {band}"
    if high < lo_edge:
        return "fails", f"{p}; {interval} lies below {band}"
    room = margin - abs(point - 0.5)
    if room <= 0:
        return "undecided", (
            f"{p}; {interval} crosses the edge of {band}; cannot hold: the point lies outside "
            "the margin (more seeds could show that it fails)"
        )
    n = seeds_needed(seeds, half_width, room)
    return "undecided", (
        f"{p}; {interval} crosses the edge of {band}; at the observed spread about {n} seeds "
        f"per method would fit it inside (now {seeds})"
    )


# --- claims -------------------------------------------------------------------------------------


def _names(value: Any) -> list[str]:
    """One name or a list of names, as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _unknown(what: str, name: Any, allowed: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r} in {where}{hint} (allowed: {', '.join(allowed)})"


def check_claims(
    claims: Any,
    envs: Sequence[str] | None,
    methods: Sequence[str] | None,
    metrics: Sequence[str] | None = None,
) -> list[str]:
    """Problems with the claim entries, one line each naming the bad value and what is allowed;
    empty if all is well.

    Checks: each entry is a mapping with only the keys of :data:`CLAIM_KEYS`; ``id``, ``envs``,
    ``better``, ``worse`` and ``metric`` are given; ids are unique; ``kind`` is one of
    :data:`KINDS`; ``per_env`` is a boolean; ``margin`` (kind similar only) lies in (0, 0.5);
    no method is on both sides. Envs, methods and metrics are checked against the given lists
    unless the list is None.
    """
    if not isinstance(claims, Sequence) or isinstance(claims, str):
        return [f"claims must be a list of mappings, got {type(claims).__name__}"]
    problems: list[str] = []
    seen: set[str] = set()
    allowed_keys = list(CLAIM_KEYS)
    for i, claim in enumerate(claims):
        if not isinstance(claim, Mapping):
            problems.append(f"claims[{i}] must be a mapping, got {type(claim).__name__}")
            continue
        where = f"claim {claim['id']!r}" if "id" in claim else f"claims[{i}]"
        problems += [
            _unknown("claim key", key, allowed_keys, where)
            for key in claim
            if key not in CLAIM_KEYS
        ]
        for key in ("id", "envs", "better", "worse", "metric"):
            if key not in claim or claim[key] in (None, "", []):
                problems.append(f"{where}: missing {key!r} ({CLAIM_KEYS[key]})")
        if "id" in claim:
            if str(claim["id"]) in seen:
                problems.append(f"{where}: duplicate id (ids must be unique)")
            seen.add(str(claim["id"]))
        kind = claim.get("kind", "better")
        if kind not in KINDS:
            problems.append(f"{where}: unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
        if "per_env" in claim and not isinstance(claim["per_env"], bool):
            problems.append(f"{where}: per_env must be true or false, got {claim['per_env']!r}")
        if "margin" in claim:
            margin = claim["margin"]
            if kind != "similar":
                problems.append(f"{where}: margin applies only to kind 'similar', not {kind!r}")
            elif (
                isinstance(margin, bool)
                or not isinstance(margin, int | float)
                or not 0 < margin < 0.5
            ):
                problems.append(
                    f"{where}: margin {margin!r} is out of range (allowed: a number in (0, 0.5))"
                )
        if envs is not None:
            problems += [
                _unknown("env", e, envs, f"{where} envs")
                for e in _names(claim.get("envs"))
                if e not in envs
            ]
        for side in ("better", "worse"):
            if methods is not None:
                problems += [
                    _unknown("method", m, methods, f"{where} {side}")
                    for m in _names(claim.get(side))
                    if m not in methods
                ]
        both = sorted(set(_names(claim.get("better"))) & set(_names(claim.get("worse"))))
        if both:
            problems.append(f"{where}: {', '.join(both)} on both sides (better and worse)")
        metric = claim.get("metric")
        if metrics is not None and metric and metric not in metrics:
            problems.append(_unknown("metric", metric, metrics, where))
    return problems


def restrict_claims(
    claims: Sequence[Mapping[str, Any]], envs: Sequence[str], methods: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The claims narrowed to a grid's envs and methods, and one line for each claim that
    keeps no comparison there (naming what it needs). A claim's envs and sides lose the names
    the grid does not run; it is kept if an env and a method on each side remain."""
    kept, skipped = [], []
    for claim in claims:
        sides = {k: [n for n in _names(claim[k]) if n in methods] for k in ("better", "worse")}
        on = [e for e in _names(claim["envs"]) if e in envs]
        if on and all(sides.values()):
            kept.append({**claim, "envs": on, **sides})
            continue
        needs = [e for e in _names(claim["envs"]) if e not in envs]
        needs += [m for k in ("better", "worse") for m in _names(claim[k]) if m not in methods]
        skipped.append(
            f"claim {claim['id']} is not decided by this grid: it does not run " + ", ".join(needs)
        )
    return kept, skipped


def _cell(scores: pd.DataFrame, env: str, method: str, metric: str) -> tuple[np.ndarray, str]:
    """The per-seed values of one (env, method), and what is missing if there are none."""
    rows = scores[(scores["env"] == env) & (scores["method"] == method)]
    if rows.empty:
        return np.empty(0), f"no completed runs of {method} on {env}"
    values = _finite(rows[metric]) if metric in rows else np.empty(0)
    if not len(values):
        return values, f"no {metric} value from the {len(rows)} runs of {method} on {env}"
    return values, ""


# The yardsticks a claim on a return is decided by, beside the one it names. "sampled": the
# final policy acting with sampled actions, where a method's policy has noise to sample (a
# derivative-free method's policy is its search mean, deterministic: its one return stands
# for it); "training": the returns of the training batches (the paper's Figure 4). A metric not
# listed (forward reward) is decided by itself only: no sampled or training forward reward is
# recorded.
YARDSTICKS: dict[str, dict[str, str]] = {
    "final_eval_return": {
        "deterministic": "final_eval_return",
        "sampled": "final_eval_sampled_return",
        "training": "final_train_return",
    },
    "average_eval_return": {
        "deterministic": "average_eval_return",
        "training": "average_train_return",
    },
}
YARDSTICK_LABELS = {
    "deterministic": "the final policy's evaluation, deterministic actions",
    "sampled": "the final policy's evaluation, sampled actions (CEM's and CMA-ES's policies "
    "have no noise: their deterministic return)",
    "training": "the training batches' return (the paper's Figure 4)",
}
PRIMARY = "deterministic"
STABILITY_SEEDS = 10  # bootstrap seeds a verdict is recomputed with (agreement column)
EXACT_LIMIT = 100_000  # splits enumerated exactly by the rank test; more are sampled


def yardstick_metrics(metric: str) -> dict[str, str]:
    """Yardstick name -> scores column for a claim on ``metric`` (the claim's own first)."""
    return YARDSTICKS.get(metric, {PRIMARY: metric})


def with_policy_returns(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with the sampled yardstick filled where a run has no sampled return (a
    derivative-free method's deterministic policy): its deterministic return."""
    out = scores.copy()
    if {"final_eval_sampled_return", "final_eval_return"} <= set(out.columns):
        out["final_eval_sampled_return"] = out["final_eval_sampled_return"].fillna(
            out["final_eval_return"]
        )
    return out


def _split_statistics(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, draws: int):
    """P(X > Y) of every split of the pooled values into groups of len(x) and len(y)
    (exactly, if there are at most EXACT_LIMIT splits), else of ``draws`` random splits."""
    values, n = np.concatenate([x, y]), len(x)
    total = math.comb(len(values), n)
    if total <= EXACT_LIMIT:
        firsts = np.array(list(itertools.combinations(range(len(values)), n)))
        masks = np.zeros((len(firsts), len(values)), dtype=bool)
        np.put_along_axis(masks, firsts, True, axis=1)
    else:
        masks = np.argsort(rng.random((draws, len(values))), axis=1) < n
    wins = _pair_wins(values, values)  # wins[i, j]: value i beats value j
    # P of a split = sum over i in the first group, j in the second, of wins[i, j] / (n m)
    first = masks.astype(float)
    return np.einsum("si,ij,sj->s", first, wins, 1.0 - first) / (n * (len(values) - n)), total


def rank_test_p(
    xs: Sequence[Any], ys: Sequence[Any], seed: int = 0, draws: int = 20_000
) -> tuple[float, bool]:
    """Two-sided permutation p of the pooled P(X > Y) (the Mann-Whitney statistic, each env a
    stratum: seeds are exchanged between the two methods within an env only), and whether it
    is exact: every split enumerated (one env of 5 vs 5 seeds: 252 splits), else ``draws``
    random splits per env from ``np.random.default_rng(seed)`` (p = (1 + hits) / (1 + draws)).
    The p of "no difference": it tests neither a direction nor an 'alike' margin."""
    strata = [(_finite(x), _finite(y)) for x, y in zip(xs, ys, strict=True)]
    if not strata or any(not len(x) or not len(y) for x, y in strata):
        return math.nan, False
    observed = float(np.mean([_pair_wins(x, y).mean() for x, y in strata]))
    rng = np.random.default_rng(seed)
    stats_, totals = zip(*(_split_statistics(x, y, rng, draws) for x, y in strata), strict=True)
    exact = math.prod(totals) <= EXACT_LIMIT and all(t <= EXACT_LIMIT for t in totals)
    if exact:
        pooled = np.zeros(1)
        for s in stats_:  # the mean over strata of every combination of splits
            pooled = (pooled[:, None] + s[None, :]).ravel()
    else:  # a random split of each env: drawn uniformly from its enumerated splits, or sampled
        pooled = sum(
            s if t > EXACT_LIMIT else rng.choice(s, size=draws)
            for s, t in zip(stats_, totals, strict=True)
        )
    pooled = np.asarray(pooled) / len(strata)
    hits = int((np.abs(pooled - 0.5) >= abs(observed - 0.5) - 1e-12).sum())
    if exact:
        return hits / len(pooled), True
    return (1 + hits) / (1 + len(pooled)), False


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p values (NaN stays NaN, not counted)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = [i for i in np.argsort(p) if math.isfinite(p[i])]
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * p[i]))
        out[i] = running
    return out.tolist()


RESULT_COLUMNS = [
    "claim",
    "statement",
    "yardstick",
    "scope",
    "better",
    "worse",
    "metric",
    "kind",
    "seeds",
    "p_improvement",
    "ci_low",
    "ci_high",
    "verdict",
    "detail",
    "p_rank",
    "p_rank_exact",
    "p_holm",
    "agreement",
]


def _comparison(
    kind: str,
    margin: float,
    cells: Mapping[str, tuple[tuple[np.ndarray, str], tuple[np.ndarray, str]]],
    pair: tuple[str, str],
    confidence: float,
    samples: int,
    seeds: Sequence[int],
) -> list[tuple[str, list[Any]]]:
    """(scope, [seeds, P, low, high, verdict, detail, p_rank, exact, agreement]) for the
    pooled scope and each env of one (better, worse) pair. ``seeds[0]`` is the bootstrap seed;
    the verdict is recomputed with each of ``seeds`` (agreement: the share that agree)."""

    def decide(xs, ys, n):
        point, low, high = poi_interval(xs, ys, confidence, samples, seeds[0])
        v, detail = verdict(kind, point, low, high, n, margin)
        others = [
            verdict(kind, *poi_interval(xs, ys, confidence, samples, s), n, margin)[0]
            for s in seeds[1:]
        ]
        agreement = (1 + sum(o == v for o in others)) / (1 + len(others))
        p_rank, exact = rank_test_p(xs, ys, seeds[0])
        return [n, point, low, high, v, detail, p_rank, exact, agreement]

    env_rows = []
    for e, ((x, miss_x), (y, miss_y)) in cells.items():
        if miss_x or miss_y:
            missing = "; ".join(t for t in (miss_x, miss_y) if t)
            stat = [0, math.nan, math.nan, math.nan, "undecided", missing, math.nan, False, 1.0]
        else:
            stat = decide([x], [y], min(len(x), len(y)))
        env_rows.append((e, stat))
    used = [e for e, stat in env_rows if stat[0] > 0]
    left_out = [stat[5] for _, stat in env_rows if stat[0] == 0]
    if used:
        xs = [cells[e][0][0] for e in used]
        ys = [cells[e][1][0] for e in used]
        pooled = decide(xs, ys, min(min(len(x), len(y)) for x, y in zip(xs, ys, strict=True)))
        if left_out:
            pooled[5] += "; left out of the pool: " + "; ".join(left_out)
    else:
        b, w = pair
        pooled = [0, math.nan, math.nan, math.nan, "undecided"]
        pooled += [f"no env has values of both {b} and {w}: " + "; ".join(left_out)]
        pooled += [math.nan, False, 1.0]
    return [(POOLED, pooled), *env_rows]


def evaluate_claims(
    claims: Sequence[Mapping[str, Any]],
    scores: pd.DataFrame,
    confidence: float = 0.95,
    samples: int = 10_000,
    seed: int = 0,
    stability_seeds: int = 1,
) -> pd.DataFrame:
    """One row per (claim, yardstick, better method, worse method, scope), with P(better >
    worse), its interval and the verdict (columns :data:`RESULT_COLUMNS`).

    Yardsticks (:data:`YARDSTICKS`): a claim on the final or average evaluation return is
    decided on the deterministic evaluation (its own metric), the sampled one and the training
    return; any other metric on itself (yardstick ``deterministic``). Scope ``all`` pools the
    claim's envs (stratified bootstrap, :func:`poi_interval`); with ``per_env`` (the default)
    each env gets its own row as well, unless the claim names a single env (its row would
    repeat the pooled one). An env where a side has no value is ``undecided`` with the detail
    naming what is missing; the pooled row then uses only the envs with values on both sides
    and names the envs it left out. ``seeds`` is the fewest seeds in any (env, method) cell.

    Beside each interval: ``p_rank``, the two-sided permutation p of the same statistic
    (:func:`rank_test_p`; ``p_rank_exact`` where every split was enumerated) and ``p_holm``,
    Holm's adjustment over the claim's comparisons of the same yardstick and kind of scope
    (its pooled rows form one family, its per-env rows another). ``agreement``: the share of
    ``stability_seeds`` bootstrap seeds (``seed``, ``seed + 1``, ...) that give the same
    verdict. Raises ValueError on a malformed claim (:func:`check_claims`).
    """
    problems = check_claims(claims, None, None)
    if problems:
        raise ValueError("bad claims: " + "; ".join(problems))
    scores = with_policy_returns(scores)
    boot_seeds = [seed + k for k in range(max(1, stability_seeds))]
    rows = []
    for claim in claims:
        kind = claim.get("kind", "better")
        margin = float(claim.get("margin", DEFAULT_MARGIN))
        envs = _names(claim["envs"])
        for yardstick, metric in yardstick_metrics(str(claim["metric"])).items():
            family = []
            for b in _names(claim["better"]):
                for w in _names(claim["worse"]):
                    cells = {
                        e: (_cell(scores, e, b, metric), _cell(scores, e, w, metric)) for e in envs
                    }
                    scoped = _comparison(
                        kind, margin, cells, (b, w), confidence, samples, boot_seeds
                    )
                    if not (claim.get("per_env", True) and len(envs) > 1):
                        scoped = scoped[:1]
                    for scope, (n, point, low, high, v, detail, p, exact, agree) in scoped:
                        family.append(
                            {
                                "claim": str(claim["id"]),
                                "statement": str(claim.get("statement", "")),
                                "yardstick": yardstick,
                                "scope": scope,
                                "better": b,
                                "worse": w,
                                "metric": metric,
                                "kind": kind,
                                "seeds": int(n),
                                "p_improvement": point,
                                "ci_low": low,
                                "ci_high": high,
                                "verdict": v,
                                "detail": detail,
                                "p_rank": p,
                                "p_rank_exact": bool(exact),
                                "agreement": agree,
                            }
                        )
            for pooled in (True, False):
                members = [r for r in family if (r["scope"] == POOLED) == pooled]
                for r, adjusted in zip(members, holm([r["p_rank"] for r in members]), strict=True):
                    r["p_holm"] = adjusted
            rows += family
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _overall(verdicts: Sequence[str]) -> str:
    """fails if any fails, holds if all hold, else undecided."""
    if "fails" in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "undecided"


def per_env_text(rows: pd.DataFrame) -> str:
    """'holds on X; fails on Y; undecided on Z' from a claim's per-env rows of one yardstick
    (an env holds if every pair holds there, fails if any fails); "" without per-env rows."""
    envs = rows[rows["scope"] != POOLED]
    by_verdict: dict[str, list[str]] = {v: [] for v in VERDICTS}
    for env, group in envs.groupby("scope", sort=False):
        by_verdict[_overall(list(group["verdict"]))].append(str(env))
    return "; ".join(f"{v} on {', '.join(e)}" for v, e in by_verdict.items() if e)


def claim_verdicts(results: pd.DataFrame) -> pd.DataFrame:
    """One row per claim (in the order of ``results``): its verdict from the pooled (``all``)
    rows of all its (better, worse) pairs on the claim's own yardstick (``deterministic``):
    ``holds`` if every pair holds, ``fails`` if any pair fails, else ``undecided``; with the
    counts of each and a sentence saying them; ``per_env`` ("holds on X; fails on Y"); the
    verdict on each other yardstick (``verdict_sampled``, ``verdict_training``; "" where the
    claim's metric has none) and ``yardstick_note``, a line saying so when the verdict
    changes with the yardstick ("" when it does not).

    Columns: claim, statement, verdict, holds, fails, undecided, comparisons, counts, per_env,
    verdict_sampled, verdict_training, yardstick_note.
    """
    if "yardstick" not in results:
        results = results.assign(yardstick=PRIMARY)
    rows = []
    for claim, all_rows in results.groupby("claim", sort=False):
        by_yardstick = {}
        for yardstick, group in all_rows.groupby("yardstick", sort=False):
            pooled = group[group["scope"] == POOLED]
            by_yardstick[yardstick] = _overall(list(pooled["verdict"]))
        primary = all_rows[all_rows["yardstick"] == PRIMARY]
        pooled = primary[primary["scope"] == POOLED]
        counts = {v: int((pooled["verdict"] == v).sum()) for v in VERDICTS}
        total = len(pooled)
        note = ""
        if len(set(by_yardstick.values())) > 1:
            note = "the verdict changes with the yardstick: " + ", ".join(
                f"{v} on the {y} one" for y, v in by_yardstick.items()
            )
        rows.append(
            {
                "claim": claim,
                "statement": all_rows["statement"].iloc[0],
                "verdict": by_yardstick.get(PRIMARY, "undecided"),
                **counts,
                "comparisons": total,
                "counts": (
                    f"{counts['holds']} of {total} comparisons hold, {counts['fails']} fail, "
                    f"{counts['undecided']} undecided"
                ),
                "per_env": per_env_text(primary),
                "verdict_sampled": by_yardstick.get("sampled", ""),
                "verdict_training": by_yardstick.get("training", ""),
                "yardstick_note": note,
            }
        )
    columns = [
        "claim",
        "statement",
        "verdict",
        *VERDICTS,
        "comparisons",
        "counts",
        "per_env",
        "verdict_sampled",
        "verdict_training",
        "yardstick_note",
    ]
    return pd.DataFrame(rows, columns=columns)


# --- aggregates across envs -------------------------------------------------------------------


def normalized_scores(
    scores: pd.DataFrame,
    metric: str,
    low: Mapping[str, float],
    high: Mapping[str, float],
) -> pd.Series:
    """(x - low[env]) / (high[env] - low[env]) for each row of ``scores``: 0 is the ``low``
    reference (a random policy), 1 the ``high`` one (the best published score). Same index as
    ``scores``, named ``score``; NaN stays NaN. Raises ValueError if an env of ``scores`` has
    no reference or low == high."""
    if scores.empty:
        return pd.Series(index=scores.index, dtype=float, name="score")
    envs = list(dict.fromkeys(scores["env"]))
    missing = [e for e in envs if e not in low or e not in high]
    if missing:
        raise ValueError(
            f"no low/high reference for env(s) {', '.join(missing)} "
            f"(given for: {', '.join(sorted(set(low) & set(high)))})"
        )
    flat = [e for e in envs if high[e] == low[e]]
    if flat:
        raise ValueError(f"low == high for env(s) {', '.join(flat)}: cannot normalise")
    lo = scores["env"].map(lambda e: float(low[e]))
    hi = scores["env"].map(lambda e: float(high[e]))
    return ((scores[metric].astype(float) - lo) / (hi - lo)).rename("score")


def iqm(x: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half (scipy.stats.trim_mean(x, 0.25)); NaNs
    dropped; NaN if empty."""
    values = _finite(x)
    return float(stats.trim_mean(values, 0.25)) if len(values) else math.nan


def _iqm_rows(values: np.ndarray) -> np.ndarray:
    """IQM of each row of a (resamples, runs) matrix."""
    return stats.trim_mean(values, 0.25, axis=1)


def aggregate_iqm(
    norm: pd.DataFrame,
    confidence: float = 0.95,
    samples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method (in order of appearance): the IQM of its normalised scores over all its
    (env, seed) runs, with a stratified bootstrap percentile interval (each resample redraws
    the seeds within each env, with replacement, from ``np.random.default_rng(seed)``).

    ``norm`` has columns env, method, seed, score (NaN scores are dropped). The interval is
    NaN if some env of the method has fewer than 2 runs. Columns: method, iqm, ci_low,
    ci_high, runs. Methods run on different envs are not comparable by this figure.
    """
    data = norm[np.isfinite(norm["score"].astype(float))]
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    rows = []
    for method, group in data.groupby("method", sort=False):
        strata = [_finite(g["score"]) for _, g in group.groupby("env", sort=False)]
        values = np.concatenate(strata)
        low = high = math.nan
        if all(len(s) >= 2 for s in strata):
            # Index arrays into ``values``, each env's block drawn from that env's own runs.
            offsets = np.cumsum([0, *(len(s) for s in strata[:-1])])
            idx = np.concatenate(
                [
                    o + rng.integers(0, len(s), size=(samples, len(s)))
                    for o, s in zip(offsets, strata, strict=True)
                ],
                axis=1,
            )
            low, high = (float(q) for q in np.quantile(_iqm_rows(values[idx]), [alpha, 1 - alpha]))
        rows.append(
            {
                "method": method,
                "iqm": iqm(values),
                "ci_low": low,
                "ci_high": high,
                "runs": len(values),
            }
        )
    return pd.DataFrame(rows, columns=["method", "iqm", "ci_low", "ci_high", "runs"])


def performance_profile(
    norm: pd.DataFrame, taus: Sequence[float] | np.ndarray | None = None
) -> pd.DataFrame:
    """Per method and tau, the fraction of its runs with normalised score > tau.

    ``norm`` has columns env, method, seed, score (NaN scores dropped). ``taus`` defaults to
    101 points from min(0, lowest score) to max(1, highest score). Columns: method, tau,
    fraction; a method's fraction never increases with tau.
    """
    data = norm[np.isfinite(norm["score"].astype(float))]
    if taus is None:
        lo = min(0.0, float(data["score"].min())) if len(data) else 0.0
        hi = max(1.0, float(data["score"].max())) if len(data) else 1.0
        taus = np.linspace(lo, hi, 101)
    grid = np.asarray(taus, dtype=float)
    frames = []
    for method, group in data.groupby("method", sort=False):
        s = group["score"].to_numpy(dtype=float)
        fraction = (s[None, :] > grid[:, None]).mean(axis=1)
        frames.append(pd.DataFrame({"method": method, "tau": grid, "fraction": fraction}))
    if not frames:
        return pd.DataFrame(columns=["method", "tau", "fraction"])
    return pd.concat(frames, ignore_index=True)


def performance_profile_figure(
    profile: pd.DataFrame, colors: Mapping[str, str] | None = None
) -> Figure:
    """The performance profile (:func:`performance_profile`) as a step plot: one line per
    method of the fraction of its runs scoring above tau; higher is better. The legend sits
    outside the axes, on the right. Returned unsaved (``fig.savefig(path)``)."""
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for method, group in profile.groupby("method", sort=False):
        ax.step(
            group["tau"],
            group["fraction"],
            where="post",
            label=str(method),
            color=None if colors is None else colors.get(str(method)),
        )
    ax.set_xlabel("normalised score tau (random = 0, best published = 1)")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    if ax.get_lines():  # no runs with a reference score: no legend to draw
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


# --- Markdown -------------------------------------------------------------------------------------


def _p_with_ci(point: float, low: float, high: float) -> str:
    if math.isnan(point):
        return ""
    text = f"{point:.2f}"
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:.2f}, {high:.2f}]"
    return text


def format_p(p: float) -> str:
    """A p value as the pages print it: three decimals, ``< 0.001`` below that, "" for NaN."""
    if not math.isfinite(p):
        return ""
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _p_value(p: float, exact: bool) -> str:
    return format_p(p) + ("" if exact or not math.isfinite(p) else " (sampled)")


def _by_yardstick(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, scope, pair): 'P [CI] verdict' on each yardstick."""
    key = ["claim", "scope", "better", "worse"]
    cells = results.assign(
        shown=[
            f"{_p_with_ci(p, lo, hi)} {v}".strip()
            for p, lo, hi, v in zip(
                results["p_improvement"],
                results["ci_low"],
                results["ci_high"],
                results["verdict"],
                strict=True,
            )
        ]
    )
    wide = cells.pivot_table(index=key, columns="yardstick", values="shown", aggfunc="first")
    order = cells[key].drop_duplicates()
    wide = order.merge(wide.reset_index(), on=key, how="left")
    columns = [y for y in ("deterministic", "sampled", "training") if y in wide]
    return pd.DataFrame(
        {
            "claim": wide["claim"],
            "scope": wide["scope"],
            "comparison": [
                f"{b} vs {w}" for b, w in zip(wide["better"], wide["worse"], strict=True)
            ],
            **{y: wide[y].fillna("") for y in columns},
        }
    )


def claims_markdown(
    results: pd.DataFrame,
    verdicts: pd.DataFrame,
    title: str = "The paper's claims",
    note: str = "",
    confidence: float = 0.95,
) -> str:
    """A Markdown section: the claims with their verdicts, every comparison behind them, and
    how they were decided. ``results`` and ``verdicts`` come from :func:`evaluate_claims` and
    :func:`claim_verdicts`; ``note`` goes under the title (e.g. a warning about budgets);
    ``confidence`` is the level the intervals were computed at (for the text)."""
    pct = f"{confidence:.0%}"
    claims_table = pd.DataFrame(
        {
            "claim": verdicts["claim"],
            "statement": verdicts["statement"],
            "verdict": [f"**{v}**" for v in verdicts["verdict"]],
            "comparisons": verdicts["counts"],
            "per env": verdicts["per_env"],
            "other yardsticks": verdicts["yardstick_note"].fillna(""),
        }
    )
    primary = results[results["yardstick"] == PRIMARY]
    comparisons = pd.DataFrame(
        {
            "claim": primary["claim"],
            "scope": primary["scope"],
            "comparison": [
                f"{b} {'vs' if k == 'better' else '~'} {w}"
                for b, w, k in zip(
                    primary["better"], primary["worse"], primary["kind"], strict=True
                )
            ],
            "metric": primary["metric"],
            "seeds": primary["seeds"],
            f"P(better > worse) [{pct} CI]": [
                _p_with_ci(p, lo, hi)
                for p, lo, hi in zip(
                    primary["p_improvement"], primary["ci_low"], primary["ci_high"], strict=True
                )
            ],
            "rank-test p": [
                _p_value(p, e)
                for p, e in zip(primary["p_rank"], primary["p_rank_exact"], strict=True)
            ],
            "Holm p": [_p_value(p, True) for p in primary["p_holm"]],
            "verdict": primary["verdict"],
            "bootstrap seeds agreeing": [f"{a:.0%}" for a in primary["agreement"]],
            "detail": primary["detail"],
        }
    )
    lines = [f"## {title}", ""]
    if note:
        lines += [note, ""]
    lines += [
        markdown_table(claims_table),
        "",
        "A claim holds if every one of its comparisons, pooled over its envs, holds; it fails "
        "if any fails; otherwise it is undecided. 'per env' says the same env by env. The "
        "verdicts are those of the claim's own yardstick (the final policy's evaluation, "
        "deterministic actions); 'other yardsticks' says where another changes it.",
        "",
        markdown_table(comparisons),
        "",
        "**The same comparisons on three yardsticks** (claims on a return; a claim on forward "
        "reward has one): "
        + "; ".join(f"{y}: {label}" for y, label in YARDSTICK_LABELS.items())
        + ".",
        "",
        markdown_table(_by_yardstick(results)),
        "",
        "**How these are decided.** P(better > worse) is the probability of improvement: the "
        "fraction of pairs (a seed of the first method, a seed of the second, on the same env) "
        "in which the first scores higher, a tie counting one half (the Mann-Whitney U "
        "statistic over n m); 0.5 means no difference. Scope `all` is the mean of the per-env "
        f"values; its {pct} interval is a stratified percentile bootstrap: each resample "
        "redraws every method's seeds with replacement within each env. `seeds` is the "
        "fewest seeds per env and method behind a row. A `better` claim (A vs B) holds if the "
        "whole interval lies above 0.5 and fails if it lies below; a `similar` claim (A ~ B) "
        "holds if the interval lies within 0.5 +- its margin (default 0.25) and fails if it "
        "lies entirely outside on one side; anything else is undecided, and the detail says "
        "about how many seeds would decide it, assuming the interval narrows like 1/sqrt(n) "
        "around the same point. The rank-test p is the two-sided permutation p of the same "
        "statistic (seeds exchanged between the two methods within each env; exact where "
        "every split was enumerated, e.g. 252 for one env of 5 vs 5 seeds, else 20,000 random "
        "splits); it tests 'no difference', not a direction or an 'alike' margin. Holm p "
        "adjusts it for the number of comparisons the claim makes (Holm's step-down, its "
        "pooled rows one family, its per-env rows another). 'bootstrap seeds agreeing' is the "
        "share of bootstrap seeds that give the same verdict.",
        "",
    ]
    return "\n".join(lines)
