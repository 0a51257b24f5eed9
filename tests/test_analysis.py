"""The aggregation's pure functions: bootstrap CIs, run status, tables, learning curves."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trpo_bench.analysis import plots
from trpo_bench.analysis import tables as analysis


def test_bootstrap_ci_of_two_values_has_known_quantiles():
    # Resampling [0, 10] twice gives means 0, 5, 10 with probabilities 1/4, 1/2, 1/4: the
    # 2.5% and 97.5% quantiles are the extremes; a 40% interval is [5, 5].
    assert analysis.bootstrap_ci([0.0, 10.0], 0.95, 4000, seed=1) == (0.0, 10.0)
    assert analysis.bootstrap_ci([0.0, 10.0], 0.40, 4000, seed=1) == (5.0, 5.0)


def test_bootstrap_ci_matches_a_direct_resampling_loop():
    x = np.array([3.0, 7.0, 1.0, 12.0, 5.0])
    low, high = analysis.bootstrap_ci(x, 0.9, 20_000, seed=0)
    rng = np.random.default_rng(123)
    means = [rng.choice(x, size=len(x)).mean() for _ in range(20_000)]
    ref_low, ref_high = np.quantile(means, [0.05, 0.95])
    assert low == pytest.approx(ref_low, abs=0.25) and high == pytest.approx(ref_high, abs=0.25)
    assert low < x.mean() < high


def test_bootstrap_ci_is_reproducible_and_seed_dependent():
    x = np.random.default_rng(0).normal(size=7)
    a = analysis.bootstrap_ci(x, 0.95, 500, seed=3)
    assert a == analysis.bootstrap_ci(x, 0.95, 500, seed=3)
    assert a != analysis.bootstrap_ci(x, 0.95, 500, seed=4)


def test_bootstrap_ci_needs_two_values_and_skips_nans_per_column():
    assert all(math.isnan(v) for v in analysis.bootstrap_ci([4.0], 0.95, 100))
    assert all(math.isnan(v) for v in analysis.bootstrap_ci([], 0.95, 100))
    # columns: constant -> zero width; one finite value -> NaN; NaN ignored in the third
    x = np.array([[2.0, 1.0, 5.0], [2.0, np.nan, np.nan], [2.0, np.nan, 5.0]])
    low, high = analysis.bootstrap_ci(x, 0.95, 300, seed=0)
    assert (low[0], high[0]) == (2.0, 2.0)
    assert math.isnan(low[1]) and math.isnan(high[1])
    assert (low[2], high[2]) == (5.0, 5.0)


def _summary(status="completed", final=10.0, average=5.0):
    return {
        "status": status,
        "final_return": final,
        "average_return": average,
        "best_return": final,
        "env_steps": 1000,
        "wall_time_s": 2.0,
    }


def test_run_figures_status():
    assert analysis.run_figures(None)["status"] == "missing"
    assert analysis.run_figures(_summary(), "train")["status"] == "completed"
    assert analysis.run_figures(_summary(status="failed"), "train")["status"] == "failed"
    # summary.json writes NaN as null: completed, but no episode ever ended
    assert analysis.run_figures(_summary(final=None), "train")["status"] == "no-return"
    # the evaluation yardstick (the default): a run without an evaluation has no return
    assert analysis.run_figures(_summary())["status"] == "no-return"


def test_run_figures_use_the_chosen_yardstick_and_keep_the_other():
    summary = {**_summary(), "final_eval_return": 42.0, "average_eval_return": 21.0}
    summary["final_forward_reward"] = 7.0
    by_eval = analysis.run_figures(summary)
    assert (by_eval["final_return"], by_eval["average_return"]) == (42.0, 21.0)
    assert (by_eval["final_train_return"], by_eval["average_train_return"]) == (10.0, 5.0)
    assert by_eval["final_forward_reward"] == 7.0
    by_train = analysis.run_figures(summary, "train")
    assert (by_train["final_return"], by_train["average_return"]) == (10.0, 5.0)


def test_budget_is_shown_as_a_share_of_the_papers():
    # Table 2: hopper 200 iterations x 1M steps
    assert analysis.paper_budget("Hopper-v5") == 200_000_000
    assert analysis.budget_text("Hopper-v5", 300_000) == "300K steps (0.15% of the paper's 200M)"
    assert analysis.budget_text("Swimmer-v5", 5e6) == "5M steps (50% of the paper's 10M)"
    assert analysis.budget_text("Hopper-v5", math.nan) == ""
    # Table 2 gives no cart-pole budget: the share is of our preset's, and says so
    assert analysis.budget_text("InvertedPendulum-v5", 5e5) == (
        "500K steps (25% of our preset's 2M; the paper gives none)"
    )


def _runs(rows):
    out = []
    for env, method, variant, seed, status, final, average in rows:
        sweep = {"step_size": float(variant.split("=")[1])} if "@" in variant else {}
        out.append(
            {
                "env": env,
                "method": method,
                "variant": variant,
                "seed": seed,
                "sweep": json.dumps(sweep, sort_keys=True),
                "status": status,
                "final_return": final,
                "average_return": average,
                "best_return": final,
                "env_steps": 1000.0,
                "wall_time_s": 2.0,
            }
        )
    return pd.DataFrame(out)


RUNS = _runs(
    [
        ("E", "a", "a", 0, "completed", 10.0, 4.0),
        ("E", "a", "a", 1, "completed", 20.0, 6.0),
        ("E", "a", "a", 2, "failed", math.nan, math.nan),
        ("E", "a", "a", 3, "missing", math.nan, math.nan),
        ("E", "ng", "ng@step_size=0.1", 0, "completed", 1.0, 1.0),
        ("E", "ng", "ng@step_size=0.1", 1, "completed", 3.0, 1.0),
        ("E", "ng", "ng@step_size=0.3", 0, "completed", 30.0, 1.0),
        ("E", "ng", "ng@step_size=0.3", 1, "completed", 50.0, 1.0),
    ]
)


def test_summarize_counts_and_names_runs_that_did_not_complete():
    s = analysis.summarize(RUNS, 0.95, 1000, 0).set_index("variant")
    a = s.loc["a"]
    assert (a["seeds_planned"], a["seeds_done"]) == (4, 2)
    assert a["final_return_mean"] == 15.0 and a["average_return_mean"] == 5.0
    assert a["notes"] == "seed 2 failed; seed 3 missing"
    assert a["final_return_ci_low"] == 10.0 and a["final_return_ci_high"] == 20.0
    assert s.loc["ng@step_size=0.3", "final_return_mean"] == 40.0
    assert list(analysis.problems(RUNS)["status"]) == ["failed", "missing"]


def test_select_best_keeps_the_best_sweep_value_and_says_so():
    best = analysis.select_best(analysis.summarize(RUNS, 0.95, 100, 0)).set_index("method")
    assert best.loc["ng", "variant"] == "ng@step_size=0.3"
    assert best.loc["ng", "choice"] == (
        "best of step_size in {0.1, 0.3} by final return: step_size=0.3"
    )
    assert best.loc["a", "choice"] == ""
    by_avg = analysis.select_best(analysis.summarize(RUNS, 0.95, 100, 0), by="average_return")
    assert set(by_avg["variant"]) == {"a", "ng@step_size=0.1"}  # tie 1.0 vs 1.0: first wins


REFERENCE = {
    "sources": {"paper": "the paper", "lib": "a library"},
    "published_at": {"paper": {"budget_steps": 1000}, "lib": {"budget_steps": 1500}},
    "entries": [
        {"env": "E", "method": "a", "source": "paper", "metric": "final_return", "value": 12.5},
        {
            "env": "E",
            "method": "a",
            "source": "lib",
            "metric": "average_return",
            "value": 3,
            "spread": 1,
            "task": "E-v3",
        },
        {"env": "E", "method": "human", "source": "paper", "metric": "final_return", "value": 99},
        {"env": "Other", "method": "a", "source": "paper", "metric": "final_return", "value": 1},
    ],
}


def test_comparison_puts_published_numbers_beside_ours():
    best = analysis.select_best(analysis.summarize(RUNS, 0.95, 100, 0))
    table = analysis.comparison(best, REFERENCE, ["E"]).set_index("method")
    assert table.loc["a", "published"] == (
        "12.5 (final; paper; 1K steps); 3 ± 1 (avg over iterations; lib; E-v3; 1.5K steps)"
    )
    assert table.loc["a", "published_not_comparable"] == ""
    assert table.loc["ng", "published"] == ""
    # a published-only method of a grid env is a row without figures of ours
    assert table.loc["human", "seeds_planned"] == 0
    assert math.isnan(table.loc["human", "final_return_mean"])
    assert "Other" not in set(table["env"])


def test_markdown_lists_every_run_that_is_left_out():
    best = analysis.select_best(analysis.summarize(RUNS, 0.95, 100, 0))
    table = analysis.comparison(best, REFERENCE, ["E"])
    text = analysis.to_markdown(table, RUNS, REFERENCE, 0.95, "T")
    assert "**2 of 8 planned runs did not complete" in text
    assert "- E / a / seed 2: failed" in text and "- E / a / seed 3: missing" in text
    assert "| E | a | 2/4 | 15.0 [10.0, 20.0] |" in text
    assert "step_size=0.3" in text
    assert "- `paper`: the paper" in text and "- `lib`: a library" in text


def test_learning_curves_average_seeds_on_a_shared_env_step_grid():
    # Seed 1 measured at other env steps (a search's generations overshoot each iteration's
    # budget) and stopped earlier; seed 2 failed. The grid is the median spacing (100) up to
    # the furthest point (300); each seed is interpolated onto it before the mean.
    progress = pd.DataFrame(
        {
            "env": "E",
            "method": "a",
            "variant": "a",
            "seed": [0, 0, 0, 1, 1, 2, 2, 2],
            "iteration": [0, 1, 2, 0, 1, 0, 1, 2],
            "env_steps": [100, 200, 300, 120, 220, 100, 200, 300],
            "return_mean": [1.0, 2.0, 3.0, 3.0, 5.0, 100.0, 100.0, 100.0],
        }
    )
    runs = RUNS[RUNS["variant"] == "a"].copy()  # seeds 0, 1 completed; 2 failed
    curves = analysis.learning_curves(progress, runs, 0.95, 500, 0)
    # seed 1 at 100: held from 120 (within half a step); at 200: 3 + 2 * 80/100 = 4.6; it
    # ends at 220, so the curve ends at 200 (300 is more than half a step beyond it)
    assert list(curves["env_steps"]) == [100.0, 200.0]
    assert list(curves["return_mean"]) == pytest.approx([2.0, 3.3])  # seed 2 not averaged
    assert list(curves["seeds"]) == [2, 2]
    assert (curves["return_ci_low"].iloc[0], curves["return_ci_high"].iloc[0]) == (1.0, 3.0)
    # every method of an env on the same x values
    other = progress[progress["seed"] == 0].assign(
        method="b", variant="b", env_steps=[90, 210, 310]
    )
    runs_b = runs.assign(method="b", variant="b")
    both = analysis.learning_curves(
        pd.concat([progress, other]), pd.concat([runs, runs_b]), 0.95, 100, 0
    )
    assert set(both.loc[both["method"] == "b", "env_steps"]) <= {100.0, 200.0, 300.0}


def test_load_runs_reads_run_folders(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "summary.json").write_text(json.dumps(_summary(final=7.0)))
    pd.DataFrame({"iteration": [0, 1], "env_steps": [10, 20], "return_mean": [1.0, 7.0]}).to_csv(
        done / "progress.csv", index=False
    )
    planned = [
        {"env": "E", "method": "a", "variant": "a", "seed": 0, "folder": str(done)},
        {"env": "E", "method": "a", "variant": "a", "seed": 1, "folder": str(tmp_path / "gone")},
    ]
    runs, progress = analysis.load_runs(planned, "train")
    assert list(runs["status"]) == ["completed", "missing"]
    assert runs["final_return"].iloc[0] == 7.0
    assert list(progress["return_mean"]) == [1.0, 7.0] and set(progress["seed"]) == {0}


def test_load_runs_reads_the_evaluation_curve_where_it_was_measured(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    summary = {**_summary(final=7.0), "final_eval_return": 9.0, "average_eval_return": 8.0}
    (done / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame(
        {
            "iteration": [0, 1, 2],
            "env_steps": [10, 20, 30],
            "return_mean": [1.0, 7.0, 8.0],
            "eval_return_mean": [math.nan, 7.5, 9.0],  # evaluated every 2 and after the last
        }
    ).to_csv(done / "progress.csv", index=False)
    planned = [{"env": "E", "method": "a", "variant": "a", "seed": 0, "folder": str(done)}]
    runs, progress = analysis.load_runs(planned)
    assert runs["final_return"].iloc[0] == 9.0 and runs["final_train_return"].iloc[0] == 7.0
    assert list(progress["iteration"]) == [1, 2]
    assert list(progress["return_mean"]) == [7.5, 9.0]


def test_plots_draw_one_line_per_method_with_its_best_variant(tmp_path):
    best = analysis.select_best(analysis.summarize(RUNS, 0.95, 100, 0))
    table = analysis.comparison(best, REFERENCE, ["E"])
    rows = []
    for variant, level in [("a", 1.0), ("ng@step_size=0.1", 2.0), ("ng@step_size=0.3", 3.0)]:
        for it in range(3):
            rows.append(
                {
                    "env": "E",
                    "method": variant.split("@")[0],
                    "variant": variant,
                    "iteration": it,
                    "env_steps": 100 * (it + 1),
                    "return_mean": level,
                    "return_ci_low": level - 1,
                    "return_ci_high": level + 1,
                    "seeds": 2,
                }
            )
    curves = pd.DataFrame(rows)
    fig = plots.env_figure(curves, table, "E")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["a", "ng (step_size=0.3)"]
    assert list(ax.get_lines()[1].get_ydata()) == [3.0, 3.0, 3.0]  # the best variant's curve
    assert len(ax.collections) == 2  # one CI band per line
    paths = plots.save(plots.grid_figure(curves, table, ["E"]), tmp_path / "grid")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size for p in paths)


def test_load_runs_names_an_unreadable_run_and_reads_the_others(tmp_path):
    good, truncated, garbled = (tmp_path / n for n in ("good", "truncated", "garbled"))
    summary = {**_summary(final=7.0), "final_eval_return": 9.0, "average_eval_return": 8.0}
    for folder in (good, truncated, garbled):
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(summary))
        pd.DataFrame(
            {"iteration": [0], "env_steps": [10], "return_mean": [1.0], "eval_return_mean": [9.0]}
        ).to_csv(folder / "progress.csv", index=False)
    (truncated / "summary.json").write_text(json.dumps(summary)[:40])
    (garbled / "progress.csv").write_text("iteration,env_steps,eval_return_mean\n0,10,abc\n")
    planned = [
        {"env": "E", "method": "a", "variant": "a", "seed": i, "folder": str(f)}
        for i, f in enumerate((good, truncated, garbled))
    ]
    runs, progress = analysis.load_runs(planned)
    assert list(runs["status"]) == ["completed", "unreadable", "unreadable"]
    assert "truncated/summary.json is not valid JSON" in runs["problem"].iloc[1]
    assert "garbled/progress.csv holds a non-numeric value" in runs["problem"].iloc[2]
    assert list(progress["seed"]) == [0]  # the readable run's curve is kept
    bad = analysis.problems(runs)
    assert bad["status"].iloc[0].startswith("unreadable (ValueError: ")
    table = analysis.summarize(runs, 0.95, 100, 0)
    assert table["seeds_done"].iloc[0] == 1 and table["final_return_mean"].iloc[0] == 9.0


def _curves_and_table(envs, methods):
    rows, runs = [], []
    for env in envs:
        for i, method in enumerate(methods):
            for it in range(3):
                rows.append(
                    {"env": env, "method": method, "variant": method, "iteration": it,
                     "env_steps": 1e5 * (it + 1), "return_mean": float(i),
                     "return_ci_low": i - 0.5, "return_ci_high": i + 0.5, "seeds": 2}
                )  # fmt: skip
            runs += [(env, method, method, s, "completed", float(i), 1.0) for s in (0, 1)]
    best = analysis.select_best(analysis.summarize(_runs(runs), 0.95, 100, 0))
    return pd.DataFrame(rows), analysis.comparison(best, REFERENCE, list(envs))


def test_figure4_is_the_papers_four_panels_with_the_papers_methods():
    envs = ["InvertedPendulum-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5", "Pong-v5"]
    methods = ["trpo-single-path", "cem", "vpg", "trpo-gae"]
    curves, table = _curves_and_table(envs, methods)
    fig = plots.figure4(curves, table, envs)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[0] for ax in visible] == envs[:4]  # no Pong panel
    for ax in visible:
        assert [line.get_label() for line in ax.get_lines()] == ["trpo-single-path", "cem"]
        # the budget as a share of the paper's, or of ours where the paper gives none
        whose = "our preset's" if ax.get_title().startswith("InvertedPendulum") else "the paper's"
        assert f"of {whose}" in ax.get_title()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["trpo-single-path", "cem"]


def test_per_env_figure_shows_every_method_with_the_legend_outside_the_axes():
    methods = ["trpo-single-path", "trpo-vine", "natural-gradient", "max-kl", "empirical-fim",
               "trpo-gae", "vpg", "cem", "cma-es", "rwr"]  # fmt: skip
    curves, table = _curves_and_table(["Hopper-v5"], methods)
    fig = plots.env_figure(curves, table, "Hopper-v5")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 10 and ax.get_legend() is None
    legend = fig.legends[0].get_window_extent()
    axes = ax.get_window_extent()
    assert legend.x0 >= axes.x1  # to the right of the axes: it covers no curve


def test_a_runs_own_note_reaches_the_table_once():
    # e.g. CEM/CMA-ES: "episodes cut at 150 of 1000 steps" (trpo_bench/methods/search.py ->
    # summary.json)
    runs = RUNS[RUNS["variant"] == "a"].assign(run_notes=["cut", "cut", "", ""])
    row = analysis.summarize(runs, 0.95, 100, 0).iloc[0]
    assert row["notes"] == "seed 2 failed; seed 3 missing; cut"
    assert analysis.run_figures({"status": "completed", "notes": ["x", "y"]})["run_notes"] == "x; y"


def _config_reference():
    import yaml

    root = Path(__file__).resolve().parents[1]
    return yaml.safe_load((root / "config" / "reference.yaml").read_text())


def test_published_numbers_beside_ours_only_where_they_compare():
    reference = _config_reference()
    envs = ["InvertedPendulum-v5", "Pong-v5", "Hopper-v5"]
    runs = _runs(
        [
            (env, m, m, s, "completed", 10.0, 5.0)
            for env, m in [
                ("InvertedPendulum-v5", "trpo-single-path"),
                ("Pong-v5", "trpo-single-path"),
                ("Hopper-v5", "trpo-gae"),
            ]
            for s in (0, 1)
        ]
    )
    steps = {"InvertedPendulum-v5": 500_000, "Pong-v5": 40_000, "Hopper-v5": 1_000_000}
    runs["env_steps"] = runs["env"].map(steps).astype(float)
    best = analysis.select_best(analysis.summarize(runs, 0.95, 100, 0))
    table = analysis.comparison(best, reference, envs).set_index(["env", "method"])
    # rllab's Cart-Pole (up to ~5,000) is not InvertedPendulum-v5 (at most 1,000): no number
    cartpole = table.loc[("InvertedPendulum-v5", "trpo-single-path")]
    assert cartpole["published"] == ""
    assert cartpole["published_not_comparable"].startswith(
        "NOT COMPARABLE: rllab Cart-Pole, rllab (another scale: "
    )
    assert "4869.8" not in cartpole["published_not_comparable"]
    assert "at most 1,000" in cartpole["published_not_comparable"]
    # Table 1's Pong 20.9 came after 500 x 100K steps: a 40K-step run does not compare
    pong = table.loc[("Pong-v5", "trpo-single-path")]
    assert pong["published"] == ""
    assert pong["published_not_comparable"] == (
        "NOT COMPARABLE: 20.9 (final; trpo-table1; ALE Pong (2015: frame skip 4, no sticky "
        "actions); 50M steps) (other budget: 50M steps there, 40K here (0.08% of it))"
    )
    # at Table 3's budget it does, with its metric, task and budget
    ok, why = analysis.comparability(
        {"env": "Pong-v5", "method": "trpo-single-path", "source": "trpo-table1"}, 5e7, reference
    )
    assert (ok, why) == (True, "")
    vine = {"env": "Pong-v5", "method": "trpo-vine", "source": "trpo-table1"}
    assert analysis.comparability(vine, 5e7, reference)[0] is False  # the vine's 200M
    # the libraries' 1M-step numbers compare with a 1M-step trpo-gae run
    hopper = table.loc[("Hopper-v5", "trpo-gae")]
    assert hopper["published"] == (
        "3372 ± 215 (final; sb3-contrib; Hopper-v3; 1M steps); "
        "2046 ± 1038 (final; tianshou; Hopper; 1M steps)"
    )
    assert hopper["published_not_comparable"] == ""  # rllab's Hopper row is single path's
    # published-only rows (random, human) carry their metric and task too
    human = table.loc[("Pong-v5", "human")]
    assert human["seeds_planned"] == 0 and human["published"].startswith("-3 (final; trpo-table1;")
    text = analysis.to_markdown(table.reset_index(), runs, reference)
    assert "NOT COMPARABLE" in text and "| Pong-v5 | trpo-single-path | 2/2 |" in text


def test_reference_levels_of_an_atari_env_and_none_for_mujoco():
    reference = _config_reference()
    levels = analysis.reference_levels(reference, "Pong-v5")
    assert levels == [
        ("random -20.4", -20.4),
        ("human -3", -3.0),
        ("paper's TRPO 20.9:\nsingle-path (50M steps), vine (200M steps)", 20.9),
    ]
    assert analysis.reference_levels(reference, "Hopper-v5") == []


def test_figures_structure_panels_legend_outside_and_atari_reference_lines():
    reference = _config_reference()
    envs = ["InvertedPendulum-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5", "Pong-v5"]
    methods = ["trpo-single-path", "trpo-vine", "cem", "vpg"]
    curves, table = _curves_and_table(envs, methods)
    # figure4: the paper's four panels; its legend below every panel, overlapping none
    fig = plots.figure4(curves, table, envs, reference=reference)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    legend = fig.legends[0].get_window_extent()
    for ax in panels:
        box = ax.get_window_extent()
        assert legend.y1 <= box.y0 or legend.x0 >= box.x1  # outside the axes
        assert not [ln for ln in ax.get_lines() if ln.get_gid() == plots.LEVEL_GID]  # MuJoCo
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["trpo-single-path", "trpo-vine",
                                                                   "cem"]  # fmt: skip
    # an Atari panel: random, human and the paper's TRPO as lines, the y range covering them
    # (the curves sit at 0..3 here; Pong's levels reach from -20.4 to 20.9)
    fig = plots.env_figure(curves, table, "Pong-v5", reference=reference)
    fig.canvas.draw()
    ax = fig.axes[0]
    levels = [ln for ln in ax.get_lines() if ln.get_gid() == plots.LEVEL_GID]
    assert [ln.get_ydata()[0] for ln in levels] == [-20.4, -3.0, 20.9]
    low, high = ax.get_ylim()
    assert low < -20.4 and high > 20.9
    box, legend = ax.get_window_extent(), fig.legends[0].get_window_extent()
    assert legend.x0 >= box.x1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "random -20.4" in labels and "human -3" in labels
