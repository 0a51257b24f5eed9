"""Do the claims grid's verdicts hold on other seeds? One env's part of the grid run again on
new seeds (``config/stability-swimmer.yaml``), its comparisons set beside the page's own.

The rerun's ``claims_comparisons.csv`` is kept in the reproduction folder
(``stability/<env id>.csv``, from the rerun's ``tables/``); :func:`stability_table` pairs each of
its per-env comparisons with the page's comparison of the same claim, yardstick and methods on
that env, and :func:`stability_section` writes the table and one sentence: how many verdicts
agree. Per-seed numbers move with the seed as they move with the CPU (float rounding grows
over training); a verdict that also holds on new seeds is what the page can stand on.

Read from CSV only (nothing executed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from trpo_bench.analysis.tables import markdown_table

FOLDER = "stability"
KEYS = ["claim", "yardstick", "scope", "better", "worse"]


def _seeds_text(seeds: pd.Series) -> str:
    return f"{int(seeds.min())} seeds"


def on_env(comparisons: pd.DataFrame, env: str) -> pd.DataFrame:
    """A grid of one env compares on "all" only: those rows are that env's."""
    if set(comparisons["scope"]) == {"all"}:
        return comparisons.assign(scope=env)
    return comparisons


def stability_table(page: pd.DataFrame, rerun: pd.DataFrame, env: str) -> pd.DataFrame:
    """The comparisons on ``env`` that both tables make, the page's (``_page``) and the
    rerun's (``_rerun``) P, interval and verdict side by side, with ``same``."""
    cols = ["p_improvement", "ci_low", "ci_high", "verdict", "seeds"]
    mine = page[page["scope"] == env][KEYS + cols]
    theirs = rerun[rerun["scope"] == env][KEYS + cols]
    both = mine.merge(theirs, on=KEYS, suffixes=("_page", "_rerun"))
    # a comparison one side could not make (no scores on that yardstick) is not a verdict
    both = both[both["p_improvement_page"].notna() & both["p_improvement_rerun"].notna()]
    both["claim"] = both["claim"].astype(str)
    return both.assign(same=both["verdict_page"] == both["verdict_rerun"])


def read_reruns(out: Path) -> dict[str, pd.DataFrame]:
    """env id -> the comparisons of its rerun kept in ``out/stability/<env id>.csv``."""
    return {
        path.stem: on_env(pd.read_csv(path, dtype={"claim": str}), path.stem)
        for path in sorted((out / FOLDER).glob("*.csv"))
    }


def stability_section(reruns: Mapping[str, pd.DataFrame], comparisons: pd.DataFrame) -> list[str]:
    """The page's lines for each rerun (:func:`read_reruns`) against the page's own
    ``comparisons`` (claims_comparisons.csv); none where there is no rerun."""
    lines: list[str] = []
    for env_id, rerun in reruns.items():
        page = on_env(comparisons, env_id)
        table = stability_table(page, rerun, env_id)
        if table.empty:
            continue
        agree = int(table["same"].sum())
        changed = table[~table["same"]]
        moves = pd.Series(
            [
                f"{a} to {b}"
                for a, b in zip(changed["verdict_page"], changed["verdict_rerun"], strict=True)
            ],
            dtype=str,
        ).value_counts()
        move_text = "; ".join(f"{n} from {m}" for m, n in moves.items())

        def cell(t: pd.DataFrame, side: str) -> list[str]:
            return [
                f"{p:.2f} [{lo:.2f}, {hi:.2f}] {v}"
                for p, lo, hi, v in zip(
                    t[f"p_improvement_{side}"],
                    t[f"ci_low_{side}"],
                    t[f"ci_high_{side}"],
                    t[f"verdict_{side}"],
                    strict=True,
                )
            ]

        shown = pd.DataFrame(
            {
                "claim": table["claim"],
                "yardstick": table["yardstick"],
                "comparison": [
                    f"{b} vs {w}" for b, w in zip(table["better"], table["worse"], strict=True)
                ],
                f"this page ({_seeds_text(table['seeds_page'])})": cell(table, "page"),
                f"new seeds ({_seeds_text(table['seeds_rerun'])})": cell(table, "rerun"),
                "same verdict": ["yes" if s else "**no**" for s in table["same"]],
            }
        )
        lines += [
            f"## Verdicts on other seeds: {env_id}",
            "",
            f"The claims grid's {env_id} part run again on other seeds "
            f"(a `config/stability-*.yaml` grid; its comparisons kept in "
            f"[{FOLDER}/{env_id}.csv]({FOLDER}/{env_id}.csv)). "
            f"**{agree} of {len(table)} comparisons on {env_id} give the same verdict on the "
            f"new seeds**" + (f" ({move_text})." if move_text else "."),
            "",
            markdown_table(shown),
            "",
        ]
    return lines
