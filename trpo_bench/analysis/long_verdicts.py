"""The verdicts of the long runs' page (docs/reproduction/long.md): sec. 8.2's Atari claim,
"above random by a clear margin" (:func:`atari_claim`), and the P(x > y) comparisons over seeds
that its tests of why a method stays below it make (:func:`p_better`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from trpo_bench.analysis import claims as claims_mod
from trpo_bench.analysis.tables import bootstrap_ci

SEC_8_2_METHOD = "trpo-single-path"  # the paper's Atari method run here (vine if affordable)
ESTIMATOR_TEST = "trpo-gae"  # single path's batches and step with GAE on a learned V(s)
PIPELINE_TEST = "ppo"  # the same frames, network and budget with many first-order steps
MARGIN_SHARE = 0.1  # "a clear margin": 10% of the way from random to the paper's TRPO score


def p_better(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, str]:
    """P(x > y) over seeds, its 95% interval and its ``better`` verdict (claims' rules)."""
    point, low, high = claims_mod.poi_interval([x], [y])
    v, _ = claims_mod.verdict("better", point, low, high, min(len(x), len(y)))
    return point, low, high, v


def against_single_path(runs: pd.DataFrame, variant: str) -> tuple[str, str]:
    """``P(variant > single path) = ...`` on the final sampled evaluation, and its verdict."""
    x, y = (
        runs.loc[runs["variant"] == v, "final_eval_sampled_return"].dropna().to_numpy()
        for v in (variant, SEC_8_2_METHOD)
    )
    point, low, high, v = p_better(x, y)
    return f"P({variant} > {SEC_8_2_METHOD}) = {point:.2f} {interval_text(low, high, 2)}, {v}.", v


def run_setting(runs: pd.DataFrame, variant: str, key: str) -> Any:
    """``key`` of ``variant``'s runs' config (one value: the grid sets it per env and method)."""
    values = {str(c.get(key)) for c in runs.loc[runs["variant"] == variant, "config"]}
    if len(values) != 1:
        raise ValueError(f"{variant}'s runs differ in {key}: {sorted(values)}")
    return next(iter(values))


def atari_claim(final: Sequence[float], random: float, trpo: float) -> dict[str, Any]:
    """Sec. 8.2 at our budget: is the mean final score above random by a clear margin
    (:data:`MARGIN_SHARE` of the way to the paper's TRPO score)? :func:`above_line` with the
    line at :func:`claim_line`."""
    return above_line(final, claim_line(random, trpo))


def claim_line(random: float, trpo: float) -> float:
    """Sec. 8.2's line: ``random`` + :data:`MARGIN_SHARE` of the way to the paper's ``trpo``."""
    return random + MARGIN_SHARE * (trpo - random)


def above_line(final: Sequence[float], line: float) -> dict[str, Any]:
    """Is the mean of ``final`` over seeds above ``line``? Holds if its 95% bootstrap interval
    lies above the line, fails if it lies below it, else undecided (at least 2 seeds for an
    interval; a NaN is no score)."""
    x = np.asarray(final, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return {"line": line, "mean": float(x.mean()) if len(x) else math.nan, "low": math.nan,
                "high": math.nan, "verdict": "undecided", "seeds": len(x)}  # fmt: skip
    low, high = (float(v) for v in bootstrap_ci(x))
    v = "holds" if low > line else "fails" if high < line else "undecided"
    return {"line": line, "mean": float(x.mean()), "low": low, "high": high, "verdict": v,
            "seeds": len(x)}  # fmt: skip


def interval_text(low: float, high: float, digits: int) -> str:
    """``[low, high]`` to ``digits`` places, or why there is none (below 2 seeds)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "(no interval below 2 seeds)"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def claim_text(claim: Mapping[str, Any]) -> str:
    """One :func:`above_line` result as the page says it: mean [interval] over n seeds
    against the line: verdict."""
    seeds = f"{claim['seeds']} seed" + ("s" if claim["seeds"] != 1 else "")
    return (
        f"{claim['mean']:.1f} {interval_text(claim['low'], claim['high'], 1)} over {seeds} "
        f"against {claim['line']:.1f}: **{claim['verdict']}**"
    )
