"""The claims' statistics: P(X > Y), the stratified bootstrap, verdicts, IQM and profiles."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats

from trpo_bench.analysis import claims

ENVS = ["InvertedPendulum-v5", "Hopper-v5"]


def scores_frame(values: dict[tuple[str, str], list[float]], metric: str = "ret") -> pd.DataFrame:
    """One row per (env, method, seed) from {(env, method): per-seed values}."""
    rows = [
        {"env": env, "method": method, "seed": seed, metric: v}
        for (env, method), vs in values.items()
        for seed, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def claim(**kw):
    return {"id": "1", "statement": "a beats b", "envs": ENVS, "better": "a", "worse": "b"} | {
        "metric": "ret",
        **kw,
    }


# --- P(X > Y) -------------------------------------------------------------------------------------


def test_probability_of_improvement_by_hand():
    # x=[1,2,3] vs y=[2,2,0]: 1 beats 0 only (1); 2 ties 2 twice and beats 0 (0.5+0.5+1);
    # 3 beats all three (3): 1 + 2 + 3 = 6 of 9 pairs.
    assert claims.probability_of_improvement([1, 2, 3], [2, 2, 0]) == pytest.approx(6 / 9)
    assert claims.probability_of_improvement([2, 2, 0], [1, 2, 3]) == pytest.approx(3 / 9)
    assert claims.probability_of_improvement([5.0], [5.0]) == 0.5
    assert claims.probability_of_improvement([1.0, np.nan], [0.0]) == 1.0
    assert math.isnan(claims.probability_of_improvement([], [1.0]))


def test_probability_of_improvement_equals_brute_force_and_mann_whitney():
    rng = np.random.default_rng(3)
    for n, m in [(3, 4), (5, 5), (7, 2)]:
        x = rng.integers(0, 4, n).astype(float)  # small integers: plenty of ties
        y = rng.integers(0, 4, m).astype(float)
        brute = sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (n * m)
        u = stats.mannwhitneyu(x, y).statistic / (n * m)
        p = claims.probability_of_improvement(x, y)
        assert p == pytest.approx(brute) and p == pytest.approx(u)


# --- the stratified bootstrap -------------------------------------------------------------------


def test_poi_interval_is_reproducible_and_contains_the_point():
    rng = np.random.default_rng(0)
    xs = [rng.normal(1.0, 1.0, 5) for _ in range(4)]
    ys = [rng.normal(0.0, 1.0, 5) for _ in range(4)]
    first = claims.poi_interval(xs, ys, seed=7)
    assert claims.poi_interval(xs, ys, seed=7) == first
    assert claims.poi_interval(xs, ys, seed=8) != first
    point, low, high = first
    assert point == pytest.approx(
        np.mean([claims.probability_of_improvement(x, y) for x, y in zip(xs, ys, strict=True)])
    )
    assert low < point < high


def test_poi_interval_of_a_complete_win_is_one():
    assert claims.poi_interval([[5, 6, 7]], [[1, 2, 3, 4]]) == (1.0, 1.0, 1.0)


def test_poi_interval_needs_two_seeds_per_side_for_an_interval():
    point, low, high = claims.poi_interval([[1.0, 2.0], [3.0]], [[0.0, 5.0], [1.0, 2.0]])
    assert point == pytest.approx((0.5 + 1.0) / 2)
    assert math.isnan(low) and math.isnan(high)


def test_poi_interval_matches_a_direct_resampling_loop():
    rng = np.random.default_rng(1)
    xs = [rng.normal(0.5, 1.0, 5) for _ in range(2)]
    ys = [rng.normal(0.0, 1.0, 4) for _ in range(2)]
    _, low, high = claims.poi_interval(xs, ys, confidence=0.9, samples=20_000, seed=0)
    ref = np.random.default_rng(99)
    pooled = [
        np.mean(
            [
                claims.probability_of_improvement(ref.choice(x, len(x)), ref.choice(y, len(y)))
                for x, y in zip(xs, ys, strict=True)
            ]
        )
        for _ in range(4000)
    ]
    ref_low, ref_high = np.quantile(pooled, [0.05, 0.95])
    assert low == pytest.approx(ref_low, abs=0.04) and high == pytest.approx(ref_high, abs=0.04)


def test_poi_interval_is_fast():
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=5) for _ in range(4)]
    ys = [rng.normal(size=5) for _ in range(4)]
    start = time.perf_counter()
    claims.poi_interval(xs, ys, samples=10_000)
    assert time.perf_counter() - start < 1.0


# --- verdicts -------------------------------------------------------------------------------------


def test_seeds_needed_formula():
    # half-width 0.2, point 0.1 from 0.5, 5 seeds: 5 * (0.2 / 0.1)^2 = 20.
    assert claims.seeds_needed(5, 0.2, 0.1) == 20
    assert claims.seeds_needed(5, 0.15, 0.1) == 12  # ceil(11.25)
    assert claims.seeds_needed(5, 0.05, 0.1) == 6  # never fewer than one more than now
    verdict, detail = claims.verdict("better", 0.6, 0.45, 0.85, 5)
    assert verdict == "undecided" and "about 20 seeds per method" in detail and "now 5" in detail
    # similar, margin 0.25: the point 0.65 leaves 0.1 of room; half-width 0.15 -> 5 * 1.5^2.
    verdict, detail = claims.verdict("similar", 0.65, 0.5, 0.8, 5)
    assert verdict == "undecided" and "about 12 seeds per method" in detail


def test_verdict_rules_at_the_edges():
    assert claims.verdict("better", 0.9, 0.51, 1.0, 5)[0] == "holds"
    assert claims.verdict("better", 0.7, 0.5, 0.9, 5)[0] == "undecided"
    assert claims.verdict("better", 0.1, 0.0, 0.49, 5)[0] == "fails"
    assert claims.verdict("similar", 0.5, 0.25, 0.75, 5)[0] == "holds"
    assert claims.verdict("similar", 0.5, 0.3, 0.7, 5, margin=0.1)[0] == "undecided"
    assert claims.verdict("similar", 0.9, 0.8, 1.0, 5)[0] == "fails"
    assert claims.verdict("similar", 0.1, 0.0, 0.2, 5)[0] == "fails"
    verdict, detail = claims.verdict("similar", 0.8, 0.6, 0.95, 5)
    assert verdict == "undecided" and "cannot hold" in detail
    verdict, detail = claims.verdict("better", 0.7, math.nan, math.nan, 1)
    assert verdict == "undecided" and "too few seeds for an interval" in detail
    with pytest.raises(ValueError, match="unknown claim kind 'worse'"):
        claims.verdict("worse", 0.5, 0.4, 0.6, 5)


def synthetic(better_mean: float, worse_mean: float, seeds: int = 5, rng_seed: int = 0):
    rng = np.random.default_rng(rng_seed)
    return scores_frame(
        {
            (env, method): list(mean + rng.normal(0.0, 1.0, seeds))
            for env in ENVS
            for method, mean in (("a", better_mean), ("b", worse_mean))
        }
    )


def pooled_row(results: pd.DataFrame) -> pd.Series:
    return results[results["scope"] == "all"].iloc[0]


def test_a_clear_win_holds_and_a_clear_loss_fails():
    results = claims.evaluate_claims([claim()], synthetic(100.0, 0.0), samples=2000)
    assert list(results["scope"]) == ["all", *ENVS]
    assert (results["verdict"] == "holds").all()
    assert (results["p_improvement"] == 1.0).all() and (results["ci_low"] == 1.0).all()
    assert (results["seeds"] == 5).all()
    lost = claims.evaluate_claims([claim()], synthetic(0.0, 100.0), samples=2000)
    assert (lost["verdict"] == "fails").all() and (lost["p_improvement"] == 0.0).all()


def test_a_tie_is_undecided_with_no_difference():
    values = [3.0, 1.0, 4.0, 1.0, 5.0]
    scores = scores_frame({(e, m): values for e in ENVS for m in ("a", "b")})
    row = pooled_row(claims.evaluate_claims([claim()], scores, samples=2000))
    assert row["verdict"] == "undecided" and row["p_improvement"] == 0.5
    assert "no difference" in row["detail"]


def test_similar_claims():
    alike = synthetic(0.0, 0.0, seeds=40, rng_seed=4)
    row = pooled_row(claims.evaluate_claims([claim(kind="similar")], alike, samples=2000))
    assert row["verdict"] == "holds", row["detail"]
    assert 0.25 <= row["ci_low"] <= row["p_improvement"] <= row["ci_high"] <= 0.75
    apart = synthetic(100.0, 0.0)
    row = pooled_row(claims.evaluate_claims([claim(kind="similar")], apart, samples=2000))
    assert row["verdict"] == "fails" and row["p_improvement"] == 1.0


def test_a_missing_method_on_one_env_is_named_and_left_out_of_the_pool():
    scores = synthetic(100.0, 0.0)
    scores = scores[~((scores["env"] == "Hopper-v5") & (scores["method"] == "b"))]
    results = claims.evaluate_claims([claim()], scores, samples=2000)
    hopper = results[results["scope"] == "Hopper-v5"].iloc[0]
    assert hopper["verdict"] == "undecided" and hopper["seeds"] == 0
    assert hopper["detail"] == "no completed runs of b on Hopper-v5"
    assert math.isnan(hopper["p_improvement"])
    pooled = pooled_row(results)
    assert pooled["verdict"] == "holds" and pooled["p_improvement"] == 1.0
    assert "left out" in pooled["detail"] and "Hopper-v5" in pooled["detail"]
    # NaN values count as no value: the env is undecided and says which metric is missing.
    scores = synthetic(100.0, 0.0)
    scores.loc[(scores["env"] == "Hopper-v5") & (scores["method"] == "a"), "ret"] = np.nan
    hopper = claims.evaluate_claims([claim()], scores, samples=500).iloc[2]
    assert hopper["verdict"] == "undecided" and "no ret value" in hopper["detail"]


def test_claim_verdicts_combine_the_pooled_rows():
    rng = np.random.default_rng(5)
    values = {(e, m): list(rng.normal(0.0, 1.0, 5)) for e in ENVS for m in ("a", "c")}
    values |= {(e, "b"): list(rng.normal(-100.0, 1.0, 5)) for e in ENVS}
    values |= {(e, "d"): list(rng.normal(100.0, 1.0, 5)) for e in ENVS}
    scores = scores_frame(values)
    entries = [
        claim(id="win", worse=["b", "b2"]),  # b2 never ran: undecided
        claim(id="mixed", worse=["b", "d"]),  # beats b, loses to d: fails
        claim(id="clean", worse="b", per_env=False),
    ]
    results = claims.evaluate_claims(entries, scores, samples=1000)
    assert list(results[results["claim"] == "clean"]["scope"]) == ["all"]
    verdicts = claims.claim_verdicts(results).set_index("claim")
    assert list(verdicts.index) == ["win", "mixed", "clean"]
    assert verdicts.loc["win", "verdict"] == "undecided"
    assert verdicts.loc["win", "counts"] == "1 of 2 comparisons hold, 0 fail, 1 undecided"
    assert verdicts.loc["mixed", "verdict"] == "fails"
    assert verdicts.loc["clean", "verdict"] == "holds"


# --- checking claim entries -----------------------------------------------------------------------


def test_check_claims_names_the_bad_value_and_the_allowed_ones():
    methods = ["trpo-single-path", "trpo-vine", "cem"]
    good = claim(better="trpo-vine", worse=["cem"])
    assert claims.check_claims([good], ENVS, methods) == []
    problems = claims.check_claims([claim(better="trpo-vnie", worse="cem")], ENVS, methods)
    assert len(problems) == 1
    assert "unknown method 'trpo-vnie'" in problems[0]
    assert "did you mean 'trpo-vine'" in problems[0]
    assert "allowed: trpo-single-path, trpo-vine, cem" in problems[0]
    bad = {
        "id": "2",
        "envs": ["Walker-v5"],
        "better": "cem",
        "worse": "cem",
        "kind": "similar",
        "margin": 0.6,
        "metirc": "ret",
    }
    problems = "\n".join(claims.check_claims([bad, good], ENVS, methods, metrics=["ret"]))
    assert "unknown claim key 'metirc'" in problems and "missing 'metric'" in problems
    assert "unknown env 'Walker-v5'" in problems and "margin 0.6 is out of range" in problems
    assert "cem on both sides" in problems
    assert "unknown kind 'best'" in "\n".join(claims.check_claims([claim(kind="best")], None, None))
    assert (
        "unknown metric 'rte'" in claims.check_claims([claim(metric="rte")], None, None, ["ret"])[0]
    )
    with pytest.raises(ValueError, match="unknown kind"):
        claims.evaluate_claims([claim(kind="best")], synthetic(1.0, 0.0))


# --- aggregates -----------------------------------------------------------------------------------


def test_iqm_is_the_mean_of_the_middle_half():
    x = [10.0, -50.0, 3.0, 1.0, 4.0, 2.0, 1000.0, 5.0]  # sorted: -50 1 2 3 4 5 10 1000
    assert claims.iqm(x) == pytest.approx((2 + 3 + 4 + 5) / 4)


def test_normalized_scores():
    scores = pd.DataFrame({"env": ["A", "A", "B"], "ret": [0.0, 50.0, 30.0]})
    norm = claims.normalized_scores(scores, "ret", {"A": 0.0, "B": 10.0}, {"A": 100.0, "B": 30.0})
    assert list(norm) == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="no low/high reference for env"):
        claims.normalized_scores(scores, "ret", {"A": 0.0}, {"A": 1.0})


def norm_frame(means: dict[str, float], seeds: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(6)
    return pd.DataFrame(
        [
            {"env": env, "method": m, "seed": s, "score": mean + 0.1 * rng.normal()}
            for m, mean in means.items()
            for env in ENVS
            for s in range(seeds)
        ]
    )


def test_aggregate_iqm_orders_the_methods():
    norm = norm_frame({"low": 0.1, "high": 0.9, "mid": 0.5})
    table = claims.aggregate_iqm(norm, samples=2000).set_index("method")
    assert list(table.sort_values("iqm").index) == ["low", "mid", "high"]
    assert (table["runs"] == 10).all()
    assert (table["ci_low"] <= table["iqm"]).all() and (table["iqm"] <= table["ci_high"]).all()
    assert table.loc["mid", "ci_high"] < table.loc["high", "ci_low"]
    assert table.loc["low", "iqm"] == pytest.approx(
        claims.iqm(norm[norm["method"] == "low"]["score"])
    )


def test_performance_profile():
    norm = pd.DataFrame(
        {
            "env": ["A"] * 4 + ["B"] * 4,
            "method": ["p"] * 4 + ["q"] * 4,
            "seed": [0, 1, 2, 3] * 2,
            "score": [0.0, 0.25, 0.5, 1.0, -0.5, 0.5, 0.5, np.nan],
        }
    )
    profile = claims.performance_profile(norm, taus=[-1.0, 0.0, 0.25, 0.5, 2.0])
    p = profile[profile["method"] == "p"].set_index("tau")["fraction"]
    q = profile[profile["method"] == "q"].set_index("tau")["fraction"]
    assert list(p) == [1.0, 0.75, 0.5, 0.25, 0.0]  # strictly above tau
    assert list(q) == [1.0, 2 / 3, 2 / 3, 0.0, 0.0]  # NaN dropped: 3 runs
    default = claims.performance_profile(norm)
    taus = default["tau"].unique()
    assert len(taus) == 101 and taus[0] == -0.5 and taus[-1] == 1.0
    for _, group in default.groupby("method"):
        assert (np.diff(group["fraction"]) <= 0).all()


def test_performance_profile_figure_has_labels_and_an_outside_legend():
    profile = claims.performance_profile(norm_frame({"a": 0.2, "b": 0.8}))
    fig = claims.performance_profile_figure(profile, colors={"a": "#ff0000"})
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("normalised score tau")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_lines()[0].get_color() == "#ff0000"
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 > ax.get_window_extent(renderer).x1


# --- Markdown ----------------------------------------------------------------------------------


def test_claims_markdown_lists_each_claim_and_verdict():
    scores = synthetic(100.0, 0.0)
    entries = [claim(id="1"), claim(id="2b", better="b", worse="a")]
    results = claims.evaluate_claims(entries, scores, samples=500)
    verdicts = claims.claim_verdicts(results)
    text = claims.claims_markdown(results, verdicts, note="budgets were cut 10x")
    assert text.startswith("## The paper's claims\n\nbudgets were cut 10x\n")
    assert "| 1 | a beats b | **holds** |" in text
    assert "| 2b | a beats b | **fails** |" in text
    # 2 envs of 5 vs 5 seeds: 252^2 splits, enumerated; 2 of them as extreme (p = 3e-5)
    row = "| 1 | all | a vs b | ret | 5 | 1.00 [1.00, 1.00] | < 0.001 | < 0.001 | holds | 100% |"
    assert row in text
    # one env: 2 of 252 splits (p = 0.008), Holm over the claim's 2 per-env rows: 0.016
    per_env = f"| 1 | {ENVS[0]} | a vs b | ret | 5 | 1.00 [1.00, 1.00] | 0.008 | 0.016 | holds |"
    assert per_env in text
    assert "stratified" in text and "Mann-Whitney" in text


# --- rank test, Holm, yardsticks, stability -----------------------------------------------------


def test_the_rank_test_is_the_exact_mann_whitney_test_on_one_env():
    from scipy import stats

    x, y = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([3.5, 6.0, 7.0, 8.0, 9.0])
    p, exact = claims.rank_test_p([x], [y])
    assert exact and p == pytest.approx(stats.mannwhitneyu(x, y, method="exact").pvalue)
    assert p == pytest.approx(8 / 252)  # 4 of the 252 splits as extreme on each side
    # two envs (252^2 splits) are still enumerated; one pulling each way is no evidence
    p2, exact2 = claims.rank_test_p([x, x + 10], [y, y - 10])
    assert exact2 and p2 > 0.5
    # three envs, every seed of x above every seed of y: sampled, p at its floor
    p3, exact3 = claims.rank_test_p([x + 10] * 3, [x] * 3, draws=5000)
    assert not exact3 and p3 == pytest.approx(1 / 5001)


def test_holm_adjusts_a_family_step_down():
    assert claims.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx(
        [0.03, 0.06, 0.06, math.nan], nan_ok=True
    )
    assert claims.holm([0.5]) == [0.5]


def test_a_return_claim_is_decided_on_three_yardsticks_and_says_when_they_disagree():
    rows = []
    for env in ENVS:
        for seed in range(5):
            # a wins on the deterministic and the sampled evaluation, loses in training; b
            # (derivative-free) has no sampled return: its deterministic one stands for it
            rows.append(
                {
                    "env": env,
                    "method": "a",
                    "seed": seed,
                    "final_eval_return": 10.0 + seed,
                    "final_eval_sampled_return": 9.0 + seed,
                    "final_train_return": 0.0,
                }
            )
            rows.append(
                {
                    "env": env,
                    "method": "b",
                    "seed": seed,
                    "final_eval_return": 1.0,
                    "final_eval_sampled_return": math.nan,
                    "final_train_return": 5.0,
                }
            )
    entry = claim(metric="final_eval_return")
    results = claims.evaluate_claims([entry], pd.DataFrame(rows), samples=500, stability_seeds=3)
    pooled = results[results["scope"] == "all"].set_index("yardstick")
    assert list(pooled.index) == ["deterministic", "sampled", "training"]
    assert list(pooled["verdict"]) == ["holds", "holds", "fails"]
    assert list(pooled["metric"]) == [
        "final_eval_return",
        "final_eval_sampled_return",
        "final_train_return",
    ]
    assert (results["agreement"] == 1.0).all()
    verdict = claims.claim_verdicts(results).iloc[0]
    assert verdict["verdict"] == "holds" and verdict["verdict_training"] == "fails"
    assert verdict["yardstick_note"] == (
        "the verdict changes with the yardstick: holds on the deterministic one, holds on the "
        "sampled one, fails on the training one"
    )
    assert verdict["per_env"] == "holds on " + ", ".join(ENVS)


def test_per_env_text_and_a_verdict_on_a_knifes_edge():
    envs = [*ENVS, "Walker2d-v5"]
    values = {(envs[0], "a"): [5.0, 6, 7, 8, 9], (envs[0], "b"): [0.0, 1, 2, 3, 4]}
    values |= {(envs[1], "a"): [0.0, 1, 2, 3, 4], (envs[1], "b"): [5.0, 6, 7, 8, 9]}
    values |= {(envs[2], "a"): [0.0, 2, 4, 6, 8], (envs[2], "b"): [1.0, 3, 5, 7, 9]}
    results = claims.evaluate_claims([claim(envs=envs)], scores_frame(values), samples=500)
    verdict = claims.claim_verdicts(results).iloc[0]
    assert verdict["per_env"] == f"holds on {envs[0]}; fails on {envs[1]}; undecided on {envs[2]}"
    # The pooled P = (1 + 0 + 0.4) / 3: near 0.5, whose interval's verdict some seeds may flip.
    row = results[results["scope"] == "all"].iloc[0]
    assert row["p_improvement"] == pytest.approx(1.4 / 3)
    many = claims.evaluate_claims(
        [claim(envs=envs)], scores_frame(values), samples=200, stability_seeds=10
    )
    assert 0.1 <= many["agreement"].min() <= 1.0
