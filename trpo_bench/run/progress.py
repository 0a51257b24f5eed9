"""progress.csv (one row per iteration) and the final figures summary.json takes from it."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trpo_bench.run.atomic import atomic_write_text


def write_progress_csv(path: Path, rows: list[Mapping[str, Any]]) -> None:
    """progress.csv: one row per iteration; columns are the union of the rows' keys, in order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write_text(path, out.getvalue())


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return repr(v)  # exact round trip
    return v


def _finite_mean(x: list[float]) -> float:
    return float(np.mean(x)) if x else math.nan


def _column(rows: list[Mapping[str, Any]], key: str) -> list[float]:
    """The finite values of ``key`` over the rows that have it."""
    return [float(r[key]) for r in rows if math.isfinite(float(r.get(key, math.nan)))]


def summarize(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Final figures of a run from its progress rows.

    ``*_return`` figures are of the training batches' episodes (``return_mean``); ``*_eval_*``
    figures are of the evaluation protocol (``trpo_bench.run.evaluation``): the final policy's
    deterministic return, its sampled return, its forward progress, and the mean over all
    evaluations (rllab's average-over-training, on the common yardstick).
    """
    returns = _column(rows, "return_mean")
    changes = _column(rows, "return_change")
    evals = _column(rows, "eval_return_mean")
    last_eval = next((r for r in reversed(rows) if "eval_return_mean" in r), {})
    return {
        "iterations_done": len(rows),
        "env_steps": rows[-1]["env_steps"] if rows else 0,
        "wall_time_s": rows[-1]["wall_time_s"] if rows else 0.0,
        "final_return": returns[-1] if returns else math.nan,
        "best_return": max(returns) if returns else math.nan,
        "average_return": _finite_mean(returns),  # rllab's metric: mean over all iterations
        "final_eval_return": float(last_eval.get("eval_return_mean", math.nan)),
        "final_eval_sampled_return": float(last_eval.get("eval_sampled_return_mean", math.nan)),
        "final_forward_reward": float(last_eval.get("eval_forward_reward_mean", math.nan)),
        "final_x_distance": float(last_eval.get("eval_x_distance_mean", math.nan)),
        "best_eval_return": max(evals) if evals else math.nan,
        "average_eval_return": _finite_mean(evals),
        "steps_accepted": sum(int(r.get("step_accepted", 0)) for r in rows),
        # The paper's claim: how often the measured return did not decrease after an update.
        "monotonic_fraction": float(np.mean([c >= 0 for c in changes])) if changes else math.nan,
    }


def episode_stats(returns: list[float], lengths: list[int]) -> dict[str, float]:
    """The progress.csv columns describing one iteration's finished episodes."""
    return {
        "return_mean": _finite_mean(returns),
        "return_std": float(np.std(returns)) if returns else math.nan,
        "return_min": float(np.min(returns)) if returns else math.nan,
        "return_max": float(np.max(returns)) if returns else math.nan,
        "episodes": len(returns),
        "episode_length_mean": _finite_mean([float(x) for x in lengths]),
    }
