"""The derivative-free baselines before and after issue 22's round two, side by side.

Round one ran CEM and CMA-ES with the population their per-iteration budget gave
(``population_size: 0``); round two gives them CMA-ES's own default population and full-length
episodes (``config/claims.yaml`` says how). The round-one scores are kept as data in the
reproduction folder (``round-one/baselines.csv``: env, method, seed, the episodes per
evaluation and the three yardsticks, copied from that page's ``runs.csv``), and
:func:`rounds_table` sets the current run table's scores beside them with P(now > round one)
decided as a claim's comparison is.

Read from CSV only (nothing executed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trpo_bench.analysis.claims import format_p, poi_interval, rank_test_p, verdict
from trpo_bench.analysis.tables import markdown_table

ROUND_ONE = "round-one/baselines.csv"
METRIC = "final_eval_return"


def rounds_table(old: pd.DataFrame, runs: pd.DataFrame, samples: int = 10_000) -> pd.DataFrame:
    """Per (env, method) of ``old``: round one's and the current runs' final deterministic
    evaluation (mean, min, max, seeds) and P(now > round one) [CI], rank-test p, verdict."""
    rows = []
    for (env, method), before in old.groupby(["env", "method"], sort=False):
        now = runs[(runs["env"] == env) & (runs["method"] == method)]
        x = now[METRIC].dropna().to_numpy(float)
        y = before[METRIC].dropna().to_numpy(float)
        if not len(x) or not len(y):
            continue
        point, low, high = poi_interval([x], [y], 0.95, samples, 0)
        rows.append(
            {
                "env": env,
                "method": method,
                "seeds_before": len(y),
                "mean_before": float(np.mean(y)),
                "min_before": float(np.min(y)),
                "max_before": float(np.max(y)),
                "seeds_now": len(x),
                "mean_now": float(np.mean(x)),
                "min_now": float(np.min(x)),
                "max_now": float(np.max(x)),
                "p_improvement": point,
                "ci_low": low,
                "ci_high": high,
                "p_rank": rank_test_p([x], [y], 0)[0],
                "verdict": verdict("better", point, low, high, min(len(x), len(y)))[0],
            }
        )
    return pd.DataFrame(rows)


def rounds_section(out: Path, runs: pd.DataFrame) -> list[str]:
    """The page's lines for the two rounds (none where ``out`` keeps no round-one file)."""
    path = out / ROUND_ONE
    if not path.exists():
        return []
    old = pd.read_csv(path)
    table = rounds_table(old, runs)
    if table.empty:
        return []
    episodes = " or ".join(str(int(n)) for n in sorted(set(old["eval_episodes"])))

    def spread(prefix: str) -> list[str]:
        return [
            f"{m:.1f} ({lo:.1f} to {hi:.1f})"
            for m, lo, hi in zip(
                table[f"mean_{prefix}"], table[f"min_{prefix}"], table[f"max_{prefix}"], strict=True
            )
        ]

    shown = pd.DataFrame(
        {
            "env": table["env"],
            "method": table["method"],
            "round one: mean (range)": spread("before"),
            "now: mean (range)": spread("now"),
            "P(now > round one) [CI]": [
                f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
                for p, lo, hi in zip(
                    table["p_improvement"], table["ci_low"], table["ci_high"], strict=True
                )
            ],
            "rank-test p": [format_p(p) for p in table["p_rank"]],
            "verdict": table["verdict"],
        }
    )
    return [
        "## The baselines, round one and now",
        "",
        "Round one ran CEM and CMA-ES with the population their per-iteration budget gave "
        "(`population_size: 0`), fewer than CMA-ES's own default; now they run at that default "
        "(4 + floor(3 ln n) for the policy's n weights) with full-length episodes, as "
        "`config/claims.yaml` says; the pilot in [ablations.md](ablations.md) chose CEM's "
        "noise decay and CMA-ES's covariance. The same budgets and seeds, final "
        f"deterministic evaluation; round one's scores are kept in "
        f"[{ROUND_ONE}]({ROUND_ONE}) (its evaluations had {episodes} episodes each).",
        "",
        markdown_table(shown),
        "",
    ]
