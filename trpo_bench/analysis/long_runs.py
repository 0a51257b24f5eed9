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
  (:func:`atari_claim`); where the grid ran them, two tests of why single path does not clear
  it: the advantage estimator (:func:`estimator_test`) and whether this pipeline learns the
  game at this budget by any method run here (:func:`pipeline_test`).

Everything is read from JSON and CSV files; nothing in them is executed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trpo_bench.analysis import claims as claims_mod
from trpo_bench.analysis.committed_runs import read_committed
from trpo_bench.analysis.tables import bootstrap_ci, budget_text, markdown_table, reference_levels
from trpo_bench.config import read_yaml_file
from trpo_bench.envs.registry import env_spec
from trpo_bench.grid import is_excluded
from trpo_bench.run.identity import run_identity
from trpo_bench.run.provenance import is_dirty

SEC_8_2_METHOD = "trpo-single-path"  # the paper's Atari method run here (vine if affordable)
ESTIMATOR_TEST = "trpo-gae"  # single path's batches and step with GAE on a learned V(s)
PIPELINE_TEST = "ppo"  # the same frames, network and budget with many first-order steps
MARGIN_SHARE = 0.1  # "a clear margin": 10% of the way from random to the paper's TRPO score
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


def _better(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, str]:
    """P(x > y) over seeds, its 95% interval and its ``better`` verdict (claims' rules)."""
    point, low, high = claims_mod.poi_interval([x], [y])
    v, _ = claims_mod.verdict("better", point, low, high, min(len(x), len(y)))
    return point, low, high, v


def _against_single_path(runs: pd.DataFrame, variant: str) -> tuple[str, str]:
    """``P(variant > single path) = ...`` on the final sampled evaluation, and its verdict."""
    x, y = (
        runs.loc[runs["variant"] == v, "final_eval_sampled_return"].dropna().to_numpy()
        for v in (variant, SEC_8_2_METHOD)
    )
    point, low, high, v = _better(x, y)
    return f"P({variant} > {SEC_8_2_METHOD}) = {point:.2f} {_interval(low, high, 2)}, {v}.", v


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
            point, low, high, v = _better(x.to_numpy(), y.to_numpy())
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


def atari_claim(final: Sequence[float], random: float, trpo: float) -> dict[str, Any]:
    """Sec. 8.2 at our budget: is the mean final score above random by a clear margin
    (:data:`MARGIN_SHARE` of the way to the paper's TRPO score)? Holds if the 95% bootstrap
    interval of the mean over seeds lies above random + margin, fails if it lies below it,
    else undecided (at least 2 seeds for an interval)."""
    x = np.asarray(final, dtype=float)
    x = x[np.isfinite(x)]
    line = random + MARGIN_SHARE * (trpo - random)
    if len(x) < 2:
        return {"line": line, "mean": float(x.mean()) if len(x) else math.nan, "low": math.nan,
                "high": math.nan, "verdict": "undecided", "seeds": len(x)}  # fmt: skip
    low, high = (float(v) for v in bootstrap_ci(x))
    v = "holds" if low > line else "fails" if high < line else "undecided"
    return {"line": line, "mean": float(x.mean()), "low": low, "high": high, "verdict": v,
            "seeds": len(x)}  # fmt: skip


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


def _interval(low: float, high: float, digits: int) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "(no interval below 2 seeds)"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _claim_text(claim: Mapping[str, Any]) -> str:
    seeds = f"{claim['seeds']} seed" + ("s" if claim["seeds"] != 1 else "")
    return (
        f"{claim['mean']:.1f} {_interval(claim['low'], claim['high'], 1)} over {seeds} "
        f"against {claim['line']:.1f}: **{claim['verdict']}**"
    )


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
            f"{_claim_text(claims[SEC_8_2_METHOD])}.",
            "",
        ]
    lines += [f"- {v}: {_claim_text(c)}" for v, c in claims.items() if v != SEC_8_2_METHOD]
    steps = full_step_text(mine, progress[progress["env"] == env])
    if steps:
        lines += ["", steps]
    if ESTIMATOR_TEST in claims and SEC_8_2_METHOD in claims:
        lines += ["", *estimator_test(mine, claims[ESTIMATOR_TEST])]
    line = random + MARGIN_SHARE * (trpo - random)
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


def full_step_text(runs: pd.DataFrame, progress: pd.DataFrame) -> str:
    """How far the line-searched methods' full steps (step fraction 1) moved the policy, as a
    share of their trust region delta, from ``progress`` (one env's); empty if none ran."""
    parts = []
    for variant, g in progress.groupby("variant", sort=True):
        if not (g["linesearch_steps"] > 0).any():
            continue  # no line search: a fixed or first-order step
        delta = float(_setting(runs, variant, "delta"))
        full = g[g["step_fraction"] == 1.0]
        kl = full["kl_mean"].mean()
        damping = _setting(runs, variant, "cg_damping")
        parts.append(
            f"{variant} took it in {len(full)} of {len(g)} iterations, at a mean KL of "
            f"{kl:.4f} ({kl / delta:.2f} of delta {delta:g}; cg_damping {damping})"
        )
    if not parts:
        return ""
    return (
        "**The step, from the runs**: the line search's first trial is the full step "
        "sqrt(2 delta / s'(A + damping I)s) s, whose quadratic KL model counts CG's damping; "
        + "; ".join(parts)
        + ". Where the Fisher's curvature is small the damping's share keeps the full step "
        "below delta (`python benchmarks/step_kl.py` measures the full step's KL by damping); "
        "whether larger steps would learn at this budget is not tested by a run here."
    )


def estimator_test(runs: pd.DataFrame, gae: Mapping[str, Any]) -> list[str]:
    """Why single path stays at random: :data:`ESTIMATOR_TEST` samples the same batches and
    takes the same step, and differs in the advantages alone (GAE on a learned V(s) instead of
    Q-hat minus its mean). P(it > single path) on the final sampled evaluation, and one
    sentence from that and ``gae`` (its own :func:`atari_claim`): the data support the
    estimator as the cause, reject it, or neither."""
    comparison, v = _against_single_path(runs, ESTIMATOR_TEST)
    head = (
        f"**Why single path stays at random, tested**: {ESTIMATOR_TEST} samples the same "
        "batches and takes the same step, and differs in the advantages alone (GAE(0.95) on a "
        f"learned V(s) instead of Q-hat minus its mean). {comparison}"
    )
    if v == "holds" and gae["verdict"] == "holds":
        tail = (
            "The data support the advantage estimator as the cause at this budget: with a "
            "learned baseline the same batches and steps clear the line."
        )
    elif gae["verdict"] == "fails":
        tail = (
            "The data reject the advantage estimator as the sole cause: with a learned "
            "baseline TRPO does not clear the line either at this budget."
        )
    else:
        tail = "Undecided: the estimator is neither supported nor rejected as the cause."
    return [f"{head} **{tail}**", ""]


def _setting(runs: pd.DataFrame, variant: str, key: str) -> Any:
    """``key`` of ``variant``'s runs' config (one value: the grid sets it per env and method)."""
    values = {str(c.get(key)) for c in runs.loc[runs["variant"] == variant, "config"]}
    if len(values) != 1:
        raise ValueError(f"{variant}'s runs differ in {key}: {sorted(values)}")
    return next(iter(values))


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


def _listed(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _tested_text(tested: Sequence[str], none: str) -> str:
    return f"; below, runs test {_listed(tested)} apart, the rest untested." if tested else none


def pipeline_test(
    runs: pd.DataFrame, ppo: Mapping[str, Any], gae: Mapping[str, Any] | None,
    imitation: Mapping[str, Any] | None = None, tested: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """Can the pipeline (the frames, the paper's network, the resets every iteration) learn the
    game at this budget at all? :data:`PIPELINE_TEST` spends the same env steps on many
    first-order steps where single path takes few KL-bounded ones. P(it > single path) on the
    final sampled evaluation and one sentence from ``ppo`` (its :func:`atari_claim`),
    ``gae`` (:data:`ESTIMATOR_TEST`'s, or None where it was not run) and ``imitation``
    (:func:`imitation_check`'s, or None where the check was not run); ``tested``: the
    candidates that runs on the page test apart (their paragraphs follow this one)."""
    comparison, _ = _against_single_path(runs, PIPELINE_TEST)
    iters, batch = (_setting(runs, PIPELINE_TEST, k) for k in ("iterations", "steps_per_iter"))
    epochs, minibatch = (_setting(runs, PIPELINE_TEST, k) for k in ("ppo_epochs", "ppo_minibatch"))
    trpo_iters = _setting(runs, SEC_8_2_METHOD, "iterations")
    head = (
        f"**Can this pipeline learn the game at this budget at all, tested**: {PIPELINE_TEST} "
        "reads the same frames through the same network, reset the same way every iteration, "
        f"for the same env steps, and takes {iters} iterations of first-order steps "
        f"({epochs} epochs of minibatch {minibatch} on batches of {int(batch):,} steps) where "
        f"{SEC_8_2_METHOD} takes {trpo_iters} KL-bounded steps. {comparison}"
    )
    if ppo["verdict"] == "holds":
        tail = (
            "The pipeline is not the limit: the frames and the paper's network learn the game "
            "at this budget. The data support TRPO's few trust-region steps at this budget as "
            "the cause"
            + (
                f", since {ESTIMATOR_TEST}, with {PIPELINE_TEST}'s advantage estimator (GAE on "
                "a learned V(s)) and TRPO's steps, does not clear the line either."
                if gae is not None and gae["verdict"] == "fails"
                else "."
            )
        )
    elif ppo["verdict"] == "fails":
        plays = int(batch) // int(_setting(runs, PIPELINE_TEST, "num_envs"))
        resets = (
            f"the resets every iteration (each env plays {plays} steps of a game per iteration "
            f"in {PIPELINE_TEST})"
        )
        if imitation is not None and imitation["verdict"] == "holds":
            tail = (
                f"Not even {PIPELINE_TEST}'s many steps clear the line at this budget, although "
                "the network can play the game from these frames (imitation, above): the "
                f"budget, {resets} and how far the network's optimisation is from a policy that "
                "plays remain candidates" + _tested_text(tested, ", none tested apart here.")
            )
        else:
            tail = (
                f"Not even {PIPELINE_TEST}'s many steps clear the line at this budget: the "
                f"budget, the frames, the paper's small network and {resets} remain "
                "candidates" + _tested_text(tested, ", none tested apart.")
            )
    else:
        tail = "Undecided: whether this pipeline learns the game at this budget is not settled."
    return [f"{head} **{tail}**", ""]


def imitation_check(check: Mapping[str, Any], line: float) -> dict[str, Any]:
    """The imitation check's answer (:mod:`trpo_bench.diagnostics.pong_imitation`'s JSON): is
    the imitating network's last round above the claim's ``line``? On the sampled evaluation
    (the claim's yardstick) by a normal 95% interval of its episodes' mean: holds if the
    interval lies above ``line``, fails if below, else undecided."""
    last = check["rounds"][-1]
    n = int(check["config"]["eval_episodes"])
    mean, std = float(last["eval_sampled_return_mean"]), float(last["eval_sampled_return_std"])
    half = 1.96 * std / math.sqrt(max(n - 1, 1))  # std is numpy's (ddof 0)
    low, high = mean - half, mean + half
    v = "holds" if low > line else "fails" if high < line else "undecided"
    return {"mean": mean, "low": low, "high": high, "episodes": n, "verdict": v,
            "deterministic": float(last["eval_return_mean"])}  # fmt: skip


def _plateau_text(check: Mapping[str, Any]) -> str:
    curves = check["first_round_heldout_accuracy_by_epoch"]
    plateau = check["plateau_epochs"]
    per_epoch, lr = int(check["first_round_steps_per_epoch"]), check["config"]["learning_rate"]

    def one(key: str) -> str:
        if plateau.get(key) is None:
            return f"throughout its {len(curves[key])} epochs"
        n = int(plateau[key])
        return f"for {n} epochs ({n * per_epoch:,} Adam steps at lr {lr:g})"

    text = (
        f"It was fitted on the frames minus Pong's background ({check['background']} of 255), "
        "the same function class as on the runs' frames (the offset folded into the first "
        "convolution's bias)"
    )
    if "raw" in curves and "centred" in curves:
        text += (
            "; fitted from the same initialisation on the runs' frames themselves, round 0 "
            "sat at the prior (always the commonest action, "
            f"{check['rounds'][0]['majority_share']:.2f} of the frames) {one('raw')}, on "
            f"the centred frames {one('centred')}"
        )
    return text + "."


def imitation_text(check: Mapping[str, Any], result: Mapping[str, Any], line: float) -> list[str]:
    """The page's paragraphs on the imitation check: whether the network can play the game
    from these frames, and how much the runs' own policies' actions depend on the frame."""
    rounds = check["rounds"]
    last = rounds[-1]
    head = (
        "**Can the paper's network play Pong from these frames at all, tested by imitation** "
        "(`python -m trpo_bench.diagnostics.pong_imitation`, "
        f"{check['wall_time_s'] / 60:.0f} min on one core): a scripted player that reads the "
        f"emulator's RAM (the ball's and its paddle's rows) scores {check['teacher']['return']:g} "
        f"on the evaluation game; the paper's {check['policy_parameters']:,}-parameter network "
        f"imitated it by DAgger ({len(rounds)} rounds of {check['config']['steps_per_round']:,} "
        f"steps, {last['frames_trained']:,} labelled frames trained on) to a held-out accuracy "
        f"of {last['heldout_accuracy']:.2f}, and scores {result['deterministic']:g} "
        f"deterministic and {result['mean']:.1f} {_interval(result['low'], result['high'], 1)} "
        f"sampled over {result['episodes']} episodes, against the line {line:.1f}. "
        + _plateau_text(check)
    )
    if result["verdict"] == "holds":
        tail = (
            "The data reject the frames and the paper's network as the limit: a policy of this "
            "network on these frames plays far above the line; what the runs lack is learning it."
        )
    elif result["verdict"] == "fails":
        tail = (
            "The imitating network stays below the line: the frames or the network may be the "
            "limit, not tested apart here."
        )
    else:
        tail = "Undecided: the imitating network is not clearly above or below the line."
    lines = [f"{head} **{tail}**", ""]
    measured = check.get("runs_measured", [])
    if measured:
        lines += [*state_dependence_text(check), ""]
    return lines


IGNORES_FRAME_SHARE = 0.01  # a policy "ignores the frame" below 1% of the imitation's KL


def _moves(shares: Sequence[float]) -> str:
    """Pong's actions: NOOP, FIRE, RIGHT (up), LEFT (down), RIGHTFIRE, LEFTFIRE."""
    up, down = shares[2] + shares[4], shares[3] + shares[5]
    return f"up {up:.0%}, down {down:.0%}, still {1 - up - down:.0%}"


def state_dependence_text(check: Mapping[str, Any]) -> list[str]:
    """How much the measured runs' final policies' actions depend on the frame, beside the
    imitating and an untrained network, and one sentence on it."""
    dep = check["state_dependence"]
    imitation = float(dep["imitation"]["kl_to_mean"])
    parts, acting = [], []
    for m in check["runs_measured"]:
        name = f"{m.get('method', m['run'])} seed {m.get('seed', '?')}"
        name += " (frames centred)" if m.get("atari_frame_offset") else ""
        steps = f" at {m['env_steps'] / 1e6:g}M steps" if m.get("env_steps") else ""
        if float(m["kl_to_mean"]) >= IGNORES_FRAME_SHARE * imitation:
            acting.append(f"{name}{steps}")
        parts.append(
            f"{name}{steps}: {m['kl_to_mean']:.1e}, {m['dead_hidden_units']} of "
            f"{m['hidden_units']} hidden units never firing, moving {_moves(m['action_shares'])}"
        )
    head = (
        "**What the runs' policies learned**, measured on the same held-out frames: the mean "
        "KL from each frame's action distribution to their average (0 for a policy that acts "
        f"the same whatever the frame) is {imitation:.3f} for the imitating network "
        f"({dep['imitation']['dead_hidden_units']} of {dep['imitation']['hidden_units']} hidden "
        f"units never firing) and {float(dep['untrained']['kl_to_mean']):.1e} untrained"
        + (
            f" ({float(dep['untrained_centred']['kl_to_mean']):.1e} with the same weights on "
            "the centred frames)"
            if "untrained_centred" in dep
            else ""
        )
        + "; "
        + "; ".join(parts)
        + "."
    )
    if not acting:
        tail = (
            "Their actions hardly depend on the frame (below "
            f"{IGNORES_FRAME_SHARE:.0%} of the imitating network's): they learned which moves to "
            "prefer, not when."
        )
    elif len(acting) == len(parts):
        tail = "Each of them acts on the frame."
    else:
        tail = (
            f"Only {' and '.join(acting)} {'acts' if len(acting) == 1 else 'act'} on the frame "
            f"(at least {IGNORES_FRAME_SHARE:.0%} "
            "of the imitating network's); the others' actions hardly depend on it: they "
            "learned which moves to prefer, not when."
        )
    return [f"{head} **{tail}**"]


LAST_EVALUATIONS = 5  # a one-seed continued run's evaluations averaged beside its final one


def continued_from(
    longer: pd.DataFrame,
    pool: Sequence[tuple[str, pd.DataFrame, pd.DataFrame]],
    grid_file: str,
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The runs that ``longer`` (a grid's runs trained for more iterations, ``grid_file``)
    extend: the first ``(name, runs, progress)`` of ``pool`` that holds, for every run of
    ``longer``, one of the same identity (all but the length, :func:`run_identity`) and seed;
    returns that name and those runs and their progress. Raises ValueError naming the grid if
    none does."""
    for name, runs, progress in pool:
        by_seed = {int(r.seed): run_identity(r.config) for r in runs.itertuples()}
        if all(by_seed.get(int(r.seed)) == run_identity(r.config) for r in longer.itertuples()):
            seeds = set(longer["seed"])
            return name, runs[runs["seed"].isin(seeds)], progress[progress["seed"].isin(seeds)]
    names = ", ".join(n for n, _, _ in pool)
    raise ValueError(
        f"{grid_file}'s runs go on from none of the runs on the page ({names}): a continued "
        "grid holds the same runs with more iterations"
    )


SAME_ROWS = ["env_steps", "return_mean", "kl_mean", "eval_return_mean", "eval_sampled_return_mean"]


def goes_on_from(longer_progress: pd.DataFrame, short_progress: pd.DataFrame) -> bool:
    """Whether the longer runs are the short ones continued: every seed's progress up to the
    short run's last env step is the short run's, row for row (:data:`SAME_ROWS`), rather
    than a run of the same settings trained again from the start (on another CPU its numbers
    differ from the first run's by rounding that grows over training)."""
    columns = [c for c in SAME_ROWS if c in longer_progress and c in short_progress]
    for seed, short in short_progress.groupby("seed"):
        mine = longer_progress[longer_progress["seed"] == seed]
        head = mine[mine["env_steps"] <= short["env_steps"].max()]
        same = len(head) == len(short) and np.array_equal(
            head[columns].to_numpy(float), short[columns].to_numpy(float), equal_nan=True
        )
        if not same:
            return False
    return True


def _sampled_at(progress: pd.DataFrame, steps: float) -> float:
    """The last sampled evaluation at or before ``steps`` env steps in ``progress``."""
    evals = progress.loc[progress["env_steps"] <= steps, "eval_sampled_return_mean"].dropna()
    return float(evals.iloc[-1]) if len(evals) else math.nan


def longer_budget_text(
    longer: pd.DataFrame, short: pd.DataFrame, variant: str, claim: Mapping[str, Any],
    grid_file: str, progress: pd.DataFrame | None = None, again: bool = False,
) -> list[str]:  # fmt: skip
    """The budget tested on ``variant``: its runs trained longer (``longer``, a grid of the
    same runs with more iterations, ``grid_file``, and their ``progress``) against the runs
    they extend (``short``, :func:`continued_from`): continued from them, or with ``again``
    (not :func:`goes_on_from`) trained again from the start, when each seed's score at the
    shorter budget is its own run's; for one seed, its last :data:`LAST_EVALUATIONS` sampled
    evaluations' mean beside the final one's (one evaluation is a noisy snapshot)."""
    seeds = sorted(set(longer["seed"]))
    score = "final_eval_sampled_return"
    steps, base_steps = float(longer["env_steps"].mean()), float(short["env_steps"].mean())

    def at_base(seed: int) -> str:
        first = float(short.loc[short["seed"] == seed, score].iloc[0])
        if not again or progress is None:
            return f"{first:.1f}"
        own = _sampled_at(progress[progress["seed"] == seed], base_steps)
        return f"{own:.1f} at {base_steps / 1e6:g}M (its first run: {first:.1f})"

    per_seed = "; ".join(
        f"seed {s}: {at_base(s)} -> {float(longer.loc[longer['seed'] == s, score].iloc[0]):.1f}"
        for s in seeds
        if (short["seed"] == s).any()
    )
    machines = {*longer.get("machine", ())} != {*short.get("machine", ())}
    why = (
        "on another machine, where rounding that grows over training makes a seed's numbers differ"
        if machines
        else "their numbers differ from the first runs'"
    )
    how = (
        f"the same settings and seeds trained again from the start to {steps / 1e6:g}M env "
        f"steps, not the runs at {base_steps / 1e6:g}M continued: {why}"
        if again
        else f"the same runs continued from {base_steps / 1e6:g}M to {steps / 1e6:g}M env steps"
    )
    head = (
        f"**The budget, tested on {variant}** (`{grid_file}`: {how}, {steps / base_steps:g} "
        f"times the budget): final sampled evaluation {per_seed}; at {steps / 1e6:g}M "
        f"{_claim_text(claim)}."
    )
    if claim["seeds"] < 2:
        above = claim["mean"] > claim["line"]
        tail = (
            f"One seed gives no interval, so this decides nothing; it ends "
            f"{'above' if above else 'below'} the line at {steps / 1e6:g}M."
        )
        evals = [] if progress is None else progress["eval_sampled_return_mean"].dropna()
        if len(evals) >= LAST_EVALUATIONS:
            last = evals.iloc[-LAST_EVALUATIONS:]
            tail += (
                f" Its last {LAST_EVALUATIONS} evaluations (from "
                f"{float(progress.loc[last.index[0], 'env_steps']) / 1e6:g}M) average "
                f"{last.mean():.1f} (from {last.min():.1f} to {last.max():.1f}), "
                f"{'above' if last.mean() > claim['line'] else 'below'} the line."
            )
    elif claim["verdict"] == "holds":
        tail = (
            f"The data support the budget: with {steps / base_steps:g} times the env steps "
            f"{variant} clears the line."
        )
    elif claim["verdict"] == "fails":
        tail = (
            f"{steps / base_steps:g} times the budget does not lift {variant} over the line; "
            "the budget is not supported at this scale (the paper's 50M is "
            f"{50e6 / steps:g} times it)."
        )
    else:
        tail = f"Undecided at {steps / 1e6:g}M: the budget is neither supported nor rejected."
    return [f"{head} **{tail}**", ""]


def offset_test_text(
    offset_runs: pd.DataFrame, runs: pd.DataFrame, claim: Mapping[str, Any], grid_file: str
) -> list[str]:
    """The frame offset tested on :data:`SEC_8_2_METHOD`: its runs with ``atari_frame_offset``
    (``offset_runs``, the grid ``grid_file``) against this grid's, same batches and steps."""
    mine = offset_runs[offset_runs["variant"] == SEC_8_2_METHOD]
    offset = float(_setting(mine, SEC_8_2_METHOD, "atari_frame_offset"))
    x = mine["final_eval_sampled_return"].dropna().to_numpy()
    y = runs.loc[runs["variant"] == SEC_8_2_METHOD, "final_eval_sampled_return"].dropna()
    point, low, high, v = _better(x, y.to_numpy())
    head = (
        f"**The frame offset tested on {SEC_8_2_METHOD}** (`{grid_file}`: the same batches, "
        f"steps and env steps, with `atari_frame_offset: {offset:.3f}`, Pong's background "
        f"made 0 inside the network): {_claim_text(claim)}; P(offset > raw frames) = "
        f"{point:.2f} {_interval(low, high, 2)}, {v}."
    )
    if claim["verdict"] == "holds":
        tail = (
            "The data support the network's optimisation on the raw frames as the cause: "
            "centred, TRPO clears the line at this budget."
        )
    elif claim["verdict"] == "fails":
        tail = "Centring the frames does not lift single path over the line at this budget."
    else:
        tail = "Undecided: the offset is neither supported nor rejected as the cause."
    return [f"{head} **{tail}**", ""]


def carried_episodes_text(
    carried_runs: pd.DataFrame, carried_progress: pd.DataFrame, runs: pd.DataFrame,
    claim: Mapping[str, Any], reset_claim: Mapping[str, Any], grid_file: str,
) -> list[str]:  # fmt: skip
    """The resets every iteration tested on :data:`PIPELINE_TEST`: its runs with
    ``continue_episodes`` (``carried_runs`` and their progress, the grid ``grid_file``;
    ``claim``, their :func:`atari_claim`) against this grid's (``reset_claim``), the same
    seeds and steps."""
    mine = carried_runs[carried_runs["variant"] == PIPELINE_TEST]
    reset = runs[runs["variant"] == PIPELINE_TEST]
    score = "final_eval_sampled_return"
    point, low, high, v = _better(mine[score].dropna().to_numpy(), reset[score].dropna().to_numpy())
    per_seed = "; ".join(
        f"seed {s}: {float(reset.loc[reset['seed'] == s, score].iloc[0]):.1f} -> "
        f"{float(mine.loc[mine['seed'] == s, score].iloc[0]):.1f}"
        for s in sorted(set(mine["seed"]))
        if (reset["seed"] == s).any()
    )
    plays = int(_setting(reset, PIPELINE_TEST, "steps_per_iter")) // int(
        _setting(reset, PIPELINE_TEST, "num_envs")
    )
    length = float(carried_progress["episode_length_mean"].dropna().mean())
    games = f"; carried over, its games in training last {length:.0f} steps on average" if (
        math.isfinite(length)
    ) else ""  # fmt: skip
    head = (
        f"**The resets tested on {PIPELINE_TEST}** (`{grid_file}`: the same runs with "
        "`continue_episodes: true`, each batch going on where the last one cut its games, "
        f"where with the resets every env plays only the first {plays} steps of a game per "
        f"iteration{games}): final sampled evaluation with resets -> carried over, {per_seed}; "
        f"{_claim_text(claim)}; P(carried over > resets) = {point:.2f} "
        f"{_interval(low, high, 2)}, {v}."
    )
    if claim["verdict"] == "holds":
        tail = (
            "The data support the resets as what holds it back: with its episodes carried "
            f"over {PIPELINE_TEST} clears the line at this budget"
            + (", with the resets it does not." if reset_claim["verdict"] == "fails" else ".")
        )
    elif claim["verdict"] == "fails" and v == "better":
        tail = (
            f"Carried over, {PIPELINE_TEST} scores higher than with the resets but stays below "
            "the line at this budget: the resets hold it back, and are not all that does."
        )
    elif claim["verdict"] == "fails":
        tail = (
            f"Carrying the episodes over does not lift {PIPELINE_TEST} over the line, nor "
            "above its runs with the resets, at this budget: the resets are rejected as what "
            "holds it at random here."
        )
    else:
        tail = "Undecided: the resets are neither supported nor rejected as the cause."
    return [f"{head} **{tail}**", ""]


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
