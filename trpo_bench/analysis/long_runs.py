"""The long runs of the reproduction (``config/long.yaml``): swimmer at Table 2's full budget
and Atari long enough to see whether it learns, from their committed runs
(``docs/reproduction/long/runs``; ``trpo-bench publish``), as ``docs/reproduction/long.md``.

- **Swimmer at 10M steps**: per method, the final return on the three yardsticks, beside the
  claims grid's 500K-step runs of the same method (``docs/reproduction/runs.csv``); the claims
  on swimmer (``claims`` of the grid) decided on these runs (a claim about a method not run yet
  is named, not decided); and the budget explanation tested: does a gradient method at 20 times
  the budget reach what CEM and CMA-ES reach at 500K?
- **Atari**: each seed's learning curve beside Table 1's random, human and TRPO scores, and the
  sec. 8.2 claim "above random by a clear margin", decided on the final sampled evaluation
  (:mod:`trpo_bench.analysis.long_verdicts`); where the grid ran or links them, the tests of
  why single path does not clear it (:mod:`trpo_bench.analysis.atari_causes`), each run beside
  the grid's runs: the advantage estimator, the pipeline by any method run here, the frames and
  the network by imitation, the budget (grids of its runs trained for longer), the frames'
  background and the resets every iteration.

Everything is read from JSON and CSV files; nothing in them is executed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trpo_bench.analysis import claims as claims_mod
from trpo_bench.analysis.atari_causes import (
    carried_episodes_text,
    continued_from,
    estimator_test,
    full_step_text,
    goes_on_from,
    imitation_check,
    imitation_text,
    longer_budget_text,
    offset_test_text,
    pipeline_test,
)
from trpo_bench.analysis.committed_runs import read_committed
from trpo_bench.analysis.long_verdicts import (
    ESTIMATOR_TEST,
    MARGIN_SHARE,
    PIPELINE_TEST,
    SEC_8_2_METHOD,
    atari_claim,
    claim_line,
    claim_text,
    p_better,
)
from trpo_bench.analysis.tables import budget_text, markdown_table, reference_levels
from trpo_bench.config import read_yaml_file
from trpo_bench.envs.registry import env_spec
from trpo_bench.grid import is_excluded
from trpo_bench.run.provenance import is_dirty

YARDSTICK_COLUMNS = {
    "deterministic": "final_eval_return",
    "sampled": "final_eval_sampled_return",
    "training": "final_return",
}


def _mean_range(x: Any) -> str:
    v = np.asarray(x, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return ""
    return f"{v.mean():.1f} ({v.min():.1f} to {v.max():.1f})"


def budget_table(runs: pd.DataFrame, env: str, short: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method of ``env``: seeds and the three yardsticks at the long budget; given
    ``short`` (the claims grid's runs), a last column with the deterministic final return of
    the same method there."""
    rows = []
    mine = runs[runs["env"] == env]
    for variant, group in mine.groupby("variant", sort=False):
        row = {
            "method": variant,
            "seeds": len(group),
            "env steps": budget_text(env, float(group["env_steps"].mean())),
            **{
                f"{y} (mean, range)": _mean_range(group[c])
                for y, c in YARDSTICK_COLUMNS.items()
                if c in group
            },
        }
        if short is not None:
            before = short[(short["env"] == env) & (short["variant"] == variant)]
            row["claims grid (deterministic)"] = (
                f"{_mean_range(before['final_eval_return'])} at "
                f"{budget_text(env, float(before['env_steps'].mean()))}"
                if len(before)
                else ""
            )
        rows.append(row)
    return pd.DataFrame(rows)


def budget_verdicts(
    runs: pd.DataFrame,
    short: pd.DataFrame,
    env: str,
    gradient: Sequence[str],
    search: Sequence[str],
) -> list[dict[str, Any]]:
    """Does each gradient method at the long budget beat each search method at the short one?
    P(long gradient > short search) with its interval and verdict (the budget explanation
    predicts it holds)."""
    out = []
    for g in gradient:
        x = runs.loc[(runs["env"] == env) & (runs["variant"] == g), "final_eval_return"]
        for s in search:
            y = short.loc[(short["env"] == env) & (short["variant"] == s), "final_eval_return"]
            if not len(x) or not len(y):
                continue
            point, low, high, v = p_better(x.to_numpy(), y.to_numpy())
            out.append({"long": g, "short": s, "p": point, "low": low, "high": high, "verdict": v})
    return out


TRPO_METHODS = ("trpo-single-path", "trpo-vine")  # claim 1's subject


def budget_conclusion(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """One sentence on the budget as the cause of claim 1's failure on swimmer, from
    :func:`budget_verdicts`: supported if any gradient method at the full budget beats a
    baseline at the short one; rejected if every comparison of a TRPO method (claim 1's
    subject) fails, the other gradient methods' comparisons said beside it; else undecided."""
    if any(v["verdict"] == "holds" for v in verdicts):
        return "The data support the budget as a cause."
    trpo = [v for v in verdicts if v["long"] in TRPO_METHODS]
    others = [v for v in verdicts if v["long"] not in TRPO_METHODS]
    if not trpo or not all(v["verdict"] == "fails" for v in trpo):
        return "Undecided: the budget is neither supported nor rejected."
    text = (
        "The data reject the budget as the cause of claim 1's failure: with 20 times the "
        "samples neither TRPO method reaches what CEM and CMA-ES reach at 500K"
    )
    failing = [v for v in others if v["verdict"] == "fails"]
    if others and len(failing) == len(others):
        return text + ", nor does any other gradient method."
    for method in dict.fromkeys(v["long"] for v in others):
        mine = [v for v in others if v["long"] == method]
        lost = sum(v["verdict"] == "fails" for v in mine)
        text += f"; {method}: {lost} of {len(mine)} comparisons fail, the rest undecided"
    return text + "."


def atari_figure(progress: pd.DataFrame, env: str, levels: Sequence[tuple[str, float]]) -> Figure:
    """One panel per method: each seed's evaluation return (sampled actions, solid;
    deterministic, dotted) and training return (thin) against env steps, with the reference
    levels as lines."""
    mine = progress[progress["env"] == env]
    variants = sorted(set(mine["variant"]), key=lambda v: (v != SEC_8_2_METHOD, v))
    fig = Figure(figsize=(8.0, 3.4 * len(variants) + 0.8), layout="constrained")
    axes = fig.subplots(len(variants), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, variant in zip(axes, variants, strict=True):
        for i, (seed, g) in enumerate(mine[mine["variant"] == variant].groupby("seed")):
            color = cycle[i % len(cycle)]
            ev = g[g["eval_return_mean"].notna()]
            ax.plot(g["env_steps"], g["return_mean"], color=color, lw=0.6, alpha=0.5)
            ax.plot(ev["env_steps"], ev["eval_sampled_return_mean"], color=color, lw=1.6,
                    label=f"seed {seed}: evaluation, sampled")  # fmt: skip
            ax.plot(ev["env_steps"], ev["eval_return_mean"], color=color, lw=1.0, ls=":",
                    label=f"seed {seed}: evaluation, deterministic")  # fmt: skip
        for label, value in levels:
            ax.axhline(value, color="grey", lw=0.8, ls="--")
            ax.annotate(label, (1.0, value), xycoords=("axes fraction", "data"), fontsize=7,
                        xytext=(4, 0), textcoords="offset points", va="center")  # fmt: skip
        ax.set_ylabel("game score")
        trained = mine.loc[mine["variant"] == variant, "return_mean"].notna().any()
        ax.set_title(
            f"{env}: {variant}\n(thin lines: the training batches' return)"
            if trained
            else f"{env}: {variant}\n(no training return: no game ends within a batch)"
        )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    axes[-1].set_xlabel("env steps (4 frames each)")
    return fig


def atari_section(
    runs: pd.DataFrame, progress: pd.DataFrame, env: str,
    levels: Sequence[tuple[str, float]], figure: Path,
    check: Mapping[str, Any] | None = None,
    longer: Sequence[tuple[str, pd.DataFrame, pd.DataFrame]] = (),
    offset: tuple[str, pd.DataFrame, pd.DataFrame] | None = None,
    carried: tuple[str, pd.DataFrame, pd.DataFrame] | None = None,
) -> list[str]:  # fmt: skip
    """The page's lines for one Atari env (its figure saved to ``figure``): the table, the
    curves, the sec. 8.2 claim on single path and, where the grid ran :data:`ESTIMATOR_TEST`
    on the same batches, the advantage estimator tested as the reason single path does not
    clear the line; with ``check`` (the imitation check's result), whether the frames and the
    network can play the game at all; with ``longer`` (grids of this grid's or the offset
    grid's runs continued, each a grid file, its runs on ``env`` and their progress, from
    :func:`linked_runs`), the budget tested on each; with ``offset`` (the same for single path
    with ``atari_frame_offset``), the frame offset tested; with ``carried`` (the same for
    :data:`PIPELINE_TEST` with ``continue_episodes``), the resets every iteration tested."""
    mine = runs[runs["env"] == env]
    curves = progress
    # The runs a continued grid's runs go on from: this grid's or the offset grid's.
    pool = [(v, g, progress[progress["variant"] == v]) for v, g in mine.groupby("variant")]
    if offset is not None:
        pool.append((f"{SEC_8_2_METHOD}, frames centred", offset[1], offset[2]))
    continued = []
    for grid_file, longer_runs, longer_progress in longer:
        variant, short, short_progress = continued_from(longer_runs, pool, grid_file)
        again = not goes_on_from(longer_progress, short_progress)
        continued.append((grid_file, longer_runs, longer_progress, variant, short, again))
        steps = float(longer_runs["env_steps"].mean())
        label = f"{variant} {'trained' if again else 'continued'} to {steps / 1e6:g}M"
        curves = pd.concat([curves, longer_progress.assign(variant=label)], ignore_index=True)
    if offset is not None:
        label = f"{SEC_8_2_METHOD}, frames centred"
        curves = pd.concat([curves, offset[2].assign(variant=label)], ignore_index=True)
    if carried is not None:
        label = f"{PIPELINE_TEST}, episodes carried over"
        curves = pd.concat([curves, carried[2].assign(variant=label)], ignore_index=True)
    atari_figure(curves, env, levels).savefig(figure, dpi=120)
    random = next(v for label, v in levels if label.startswith("random"))
    trpo = max(v for label, v in levels if label.startswith("paper's TRPO"))
    score = "final_eval_sampled_return"
    claims = {v: atari_claim(g[score], random, trpo) for v, g in mine.groupby("variant", sort=True)}
    table = budget_table(runs, env)
    lines = [
        markdown_table(table),
        "",
        f"![{env}]({figure.name})",
        "",
        f"The line: random {random:g} + {MARGIN_SHARE:.0%} of the way to the paper's TRPO "
        f"{trpo:g}; each method's mean final sampled evaluation with its 95% interval. What "
        "the policy sees is not the limit: tests/test_atari.py checks that a controller "
        "reading only the pooled frames keeps Pong's rallies going far longer than random "
        "play.",
        "",
    ]
    if SEC_8_2_METHOD in claims:
        lines += [
            f"**Sec. 8.2 at this budget, 'above random by a clear margin'** (the paper: TRPO "
            f'"consistently achieved reasonable scores", Table 1), {SEC_8_2_METHOD}: '
            f"{claim_text(claims[SEC_8_2_METHOD])}.",
            "",
        ]
    lines += [f"- {v}: {claim_text(c)}" for v, c in claims.items() if v != SEC_8_2_METHOD]
    steps = full_step_text(mine, progress[progress["env"] == env])
    if steps:
        lines += ["", steps]
    if ESTIMATOR_TEST in claims and SEC_8_2_METHOD in claims:
        lines += ["", *estimator_test(mine, claims[ESTIMATOR_TEST])]
    line = claim_line(random, trpo)
    imitation = imitation_check(check, line) if check is not None else None
    if imitation is not None:
        lines += ["", *imitation_text(check, imitation, line)]
    tested = [*(["the budget"] if longer else []),
              *(["the raw frames' background"] if offset is not None else []),
              *(["the resets every iteration"] if carried is not None else [])]  # fmt: skip
    if PIPELINE_TEST in claims and SEC_8_2_METHOD in claims:
        lines += [
            "",
            *pipeline_test(
                mine, claims[PIPELINE_TEST], claims.get(ESTIMATOR_TEST), imitation, tested
            ),
        ]
    elif ESTIMATOR_TEST in claims and claims[ESTIMATOR_TEST]["verdict"] == "fails":
        lines += ["The budget remains the untested explanation.", ""]
    for grid_file, longer_runs, longer_progress, variant, short, again in continued:
        claim = atari_claim(longer_runs["final_eval_sampled_return"], random, trpo)
        budget = longer_budget_text(longer_runs, short, variant, claim, grid_file,
                                    longer_progress, again)  # fmt: skip
        lines += ["", *budget, provenance_text(longer_runs), ""]
    if offset is not None and SEC_8_2_METHOD in claims:
        grid_file, offset_runs, _ = offset
        claim = atari_claim(offset_runs["final_eval_sampled_return"], random, trpo)
        lines += ["", *offset_test_text(offset_runs, mine, claim, grid_file),
                  provenance_text(offset_runs), ""]  # fmt: skip
    if carried is not None and PIPELINE_TEST in claims:
        grid_file, carried_runs, carried_progress = carried
        claim = atari_claim(carried_runs["final_eval_sampled_return"], random, trpo)
        lines += ["", *carried_episodes_text(carried_runs, carried_progress, mine, claim,
                                             claims[PIPELINE_TEST], grid_file),
                  provenance_text(carried_runs), ""]  # fmt: skip
    return [*lines, ""]


def provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """How many of ``runs`` each commit and machine ran (columns commit, machine, runs)."""
    groups = runs.groupby(["git_commit", "machine"], sort=True).size()
    return groups.reset_index(name="runs").rename(columns={"git_commit": "commit"})


def provenance_text(runs: pd.DataFrame) -> str:
    """:func:`provenance` of ``runs`` (a linked grid's) in one line."""
    if not {"git_commit", "machine"} <= set(runs.columns):
        return "Which commit and machine ran these runs: not recorded."
    parts = [
        f"{g.runs} at commit `{g.commit}`"
        + (" (a tree with uncommitted changes)" if is_dirty(g.commit) else "")
        + f" on {g.machine}"
        for g in provenance(runs).itertuples()
    ]
    return "These runs: " + "; ".join(parts) + "."


def dirty_text(runs: pd.DataFrame) -> str:
    """Which of ``runs`` ran from a tree with uncommitted changes (a ``-dirty`` commit), in one
    sentence; empty if none did."""
    dirty = runs[runs["git_commit"].map(is_dirty)].sort_values(["env", "variant", "seed"])
    if dirty.empty:
        return ""
    named = "; ".join(
        f"{env} {variant} seed{'s' if len(g) > 1 else ''} {', '.join(str(s) for s in g['seed'])}"
        for (env, variant), g in dirty.groupby(["env", "variant"], sort=True)
    )
    return (
        f"A commit marked `-dirty` ran from a tree with uncommitted changes, so its code is not "
        f"the commit's alone (what was uncommitted is not recorded): {len(dirty)} of these "
        f"{len(runs)} runs ({named})."
    )


def linked_runs(
    grid: Mapping[str, Any], key: str, env: str
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Each grid file that ``grid[key]`` names for ``env`` (``longer_runs``, ``offset_runs``,
    ``continue_runs``: one file or a list), with its committed runs on ``env`` and their
    progress, in the order named; a grid none of whose runs on ``env`` is committed yet is
    left out."""
    named = grid.get(key, {}).get(env) or []
    linked = []
    for grid_file in [named] if isinstance(named, str) else named:
        runs, progress = read_committed(read_yaml_file(grid_file)["committed_runs"])
        if not runs.empty and (runs["env"] == env).any():
            linked.append((grid_file, runs[runs["env"] == env], progress[progress["env"] == env]))
    return linked


def write_long_page(
    grid: Mapping[str, Any], grid_file: str, short_runs: pd.DataFrame,
    reference: Mapping[str, Any], out: str | Path,
) -> Path:  # fmt: skip
    """``out`` (long.md) and its figures beside it, from the grid's committed runs."""
    out = Path(out)
    runs, progress = read_committed(grid["committed_runs"])
    lines = [
        "# The long runs: swimmer at the paper's full budget, Atari for millions of steps",
        "",
        f"Generated by `trpo-bench long-runs {grid_file}` from the committed runs of "
        f"`{grid_file}` (`{grid['committed_runs']}`: each run's summary.json and "
        "progress.csv.gz); the grid is run in parts and adopts these runs instead of training "
        "them again.",
        "",
    ]
    if runs.empty:
        out.write_text("\n".join([*lines, "No committed runs yet.", ""]))
        return out
    dirty = dirty_text(runs)
    lines += [
        "Which commit and machine ran each run:",
        "",
        markdown_table(provenance(runs)),
        "",
        *([dirty, ""] if dirty else []),
    ]
    planned = {(e, m) for e in grid["envs"] for m in grid["methods"] if not is_excluded(grid, e, m)}
    not_started = [e for e in grid["envs"] if e not in set(runs["env"])]
    if not_started:
        lines += [f"Not run yet at all: {', '.join(not_started)} (a later sitting's part).", ""]
    for env in [e for e in grid["envs"] if e in set(runs["env"])]:
        mine = runs[runs["env"] == env]
        lines += [f"## {env}", ""]
        missing = sorted(m for e, m in planned if e == env and m not in set(mine["method"]))
        if env_spec(env).family != "atari":
            lines += [markdown_table(budget_table(runs, env, short_runs)), ""]
            if missing:
                lines += [f"Not run yet: {', '.join(missing)} (the next sitting's part).", ""]
            # The budget explanation was offered for swimmer (discussion.md), and is tested there.
            gradient = ["trpo-single-path", "trpo-vine", "natural-gradient"]
            verdicts = env.startswith("Swimmer") and budget_verdicts(
                runs, short_runs, env, gradient, ["cem", "cma-es"]
            )
            if verdicts:
                lines += [
                    "**The budget explanation tested** (docs/reproduction/discussion.md named "
                    "the budget as a cause of claim 1's failure on swimmer): does a gradient "
                    "method at the full budget beat CEM and CMA-ES at the claims grid's 500K?",
                    "",
                ]
                lines += [
                    f"- {v['long']} at the full budget > {v['short']} at 500K: P = "
                    f"{v['p']:.2f} [{v['low']:.2f}, {v['high']:.2f}], {v['verdict']}"
                    for v in verdicts
                ]
                lines += ["", f"**{budget_conclusion(verdicts)}**", ""]
            scores = mine.rename(columns={"final_return": "final_train_return"})
            scores["method"] = scores["variant"]
            on_env = [
                {**c, "envs": [env]}
                for c in grid.get("claims", [])
                if env in ([c["envs"]] if isinstance(c["envs"], str) else c["envs"])
            ]
            kept, skipped = claims_mod.restrict_claims(on_env, [env], sorted(set(mine["method"])))
            if kept:
                results = claims_mod.evaluate_claims(kept, scores, stability_seeds=10)
                verdicts_ = claims_mod.claim_verdicts(results)
                lines += ["Claims decided on these runs:", ""]
                lines += [
                    f"- claim {r.claim} ({r.statement}): **{r.verdict}** ({r.counts})"
                    + (f"; {r.yardstick_note}" if r.yardstick_note else "")
                    for r in verdicts_.itertuples()
                ]
            lines += [f"- {line}" for line in skipped]
            lines += [""]
        else:
            levels = reference_levels(reference, env)
            check_file = grid.get("pipeline_checks", {}).get(env)
            check = json.loads(Path(check_file).read_text(encoding="utf-8")) if check_file else None
            longer = linked_runs(grid, "longer_runs", env)
            offset = next(iter(linked_runs(grid, "offset_runs", env)), None)
            carried = next(iter(linked_runs(grid, "continue_runs", env)), None)
            figure = out.parent / f"long-{env}.png"
            lines += atari_section(
                runs, progress, env, levels, figure, check, longer, offset, carried
            )
    out.write_text("\n".join(lines))
    return out
