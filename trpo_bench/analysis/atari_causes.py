"""Why Pong stays at random, tested: the paragraphs of docs/reproduction/long.md's Atari
section that test each candidate cause against the sec. 8.2 claim (:mod:`long_verdicts`): the
advantage estimator (:func:`estimator_test`), the pipeline by a method with many first-order
steps (:func:`pipeline_test`), the frames and the network by imitation
(:func:`imitation_text`), the size of TRPO's steps (:func:`full_step_text`), the budget
(:func:`longer_budget_text`, on runs continued or trained again for longer), the frames'
background (:func:`offset_test_text`) and the resets every iteration
(:func:`carried_episodes_text`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from trpo_bench.analysis.long_verdicts import (
    ESTIMATOR_TEST,
    PIPELINE_TEST,
    SEC_8_2_METHOD,
    above_line,
    against_single_path,
    claim_text,
    interval_text,
    p_better,
    run_setting,
)
from trpo_bench.run.identity import run_identity


def full_step_text(runs: pd.DataFrame, progress: pd.DataFrame) -> str:
    """How far the line-searched methods' full steps (step fraction 1) moved the policy, as a
    share of their trust region delta, from ``progress`` (one env's); empty if none ran."""
    parts = []
    for variant, g in progress.groupby("variant", sort=True):
        if not (g["linesearch_steps"] > 0).any():
            continue  # no line search: a fixed or first-order step
        delta = float(run_setting(runs, variant, "delta"))
        full = g[g["step_fraction"] == 1.0]
        kl = full["kl_mean"].mean()
        damping = run_setting(runs, variant, "cg_damping")
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
    comparison, v = against_single_path(runs, ESTIMATOR_TEST)
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
    comparison, _ = against_single_path(runs, PIPELINE_TEST)
    iters, batch = (run_setting(runs, PIPELINE_TEST, k) for k in ("iterations", "steps_per_iter"))
    epochs, minibatch = (
        run_setting(runs, PIPELINE_TEST, k) for k in ("ppo_epochs", "ppo_minibatch")
    )
    trpo_iters = run_setting(runs, SEC_8_2_METHOD, "iterations")
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
        plays = int(batch) // int(run_setting(runs, PIPELINE_TEST, "num_envs"))
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
        f"deterministic and {result['mean']:.1f} {interval_text(result['low'], result['high'], 1)} "
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
    they extend (``short``, :func:`continued_from`): continued from them or, with ``again``
    (not :func:`goes_on_from`), trained again from the start, each seed's score at the shorter
    budget then read from its own ``progress`` and given beside its first run's; for one seed,
    its last :data:`LAST_EVALUATIONS` sampled evaluations' mean beside the final one's (one
    evaluation is a noisy snapshot)."""
    seeds = sorted(set(longer["seed"]))
    score = "final_eval_sampled_return"
    steps, base_steps = float(longer["env_steps"].mean()), float(short["env_steps"].mean())

    # a grid trained again: each seed's own score at the shorter budget
    own_at_base = (
        {s: _sampled_at(progress[progress["seed"] == s], base_steps) for s in seeds}
        if again and progress is not None
        else {}
    )

    def at_base(seed: int) -> str:
        first = float(short.loc[short["seed"] == seed, score].iloc[0])
        if seed not in own_at_base:
            return f"{first:.1f}"
        return f"{own_at_base[seed]:.1f} at {base_steps / 1e6:g}M (its first run: {first:.1f})"

    per_seed = "; ".join(
        f"seed {s}: {at_base(s)} -> {float(longer.loc[longer['seed'] == s, score].iloc[0]):.1f}"
        for s in seeds
        if (short["seed"] == s).any()
    )
    elsewhere = {*longer.get("machine", ())} != {*short.get("machine", ())}
    why = (
        "on another machine, where rounding that grows over training makes a seed's numbers differ"
        if elsewhere
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
        f"{claim_text(claim)}."
    )
    if len(own_at_base) >= 2:
        own = above_line(list(own_at_base.values()), claim["line"])
        first = above_line(short[score], claim["line"])
        if own["verdict"] != first["verdict"]:
            agree = ": the verdict is not the same."
        else:
            agree = ", the same verdict" + (" on two machines." if elsewhere else ".")
        head += (
            f" At {base_steps / 1e6:g}M, trained again: {claim_text(own)}; the first runs: "
            f"**{first['verdict']}**{agree}"
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
    offset = float(run_setting(mine, SEC_8_2_METHOD, "atari_frame_offset"))
    x = mine["final_eval_sampled_return"].dropna().to_numpy()
    y = runs.loc[runs["variant"] == SEC_8_2_METHOD, "final_eval_sampled_return"].dropna()
    point, low, high, v = p_better(x, y.to_numpy())
    head = (
        f"**The frame offset tested on {SEC_8_2_METHOD}** (`{grid_file}`: the same batches, "
        f"steps and env steps, with `atari_frame_offset: {offset:.3f}`, Pong's background "
        f"made 0 inside the network): {claim_text(claim)}; P(offset > raw frames) = "
        f"{point:.2f} {interval_text(low, high, 2)}, {v}."
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
    point, low, high, v = p_better(
        mine[score].dropna().to_numpy(), reset[score].dropna().to_numpy()
    )
    per_seed = "; ".join(
        f"seed {s}: {float(reset.loc[reset['seed'] == s, score].iloc[0]):.1f} -> "
        f"{float(mine.loc[mine['seed'] == s, score].iloc[0]):.1f}"
        for s in sorted(set(mine["seed"]))
        if (reset["seed"] == s).any()
    )
    plays = int(run_setting(reset, PIPELINE_TEST, "steps_per_iter")) // int(
        run_setting(reset, PIPELINE_TEST, "num_envs")
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
        f"{claim_text(claim)}; P(carried over > resets) = {point:.2f} "
        f"{interval_text(low, high, 2)}, {v}."
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
