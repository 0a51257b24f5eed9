"""The long runs' page (trpo_bench.analysis.long_runs): the Atari claim, its figure and the
advantage estimator tested as the reason single path stays at random."""

import numpy as np
import pandas as pd
import pytest

from trpo_bench.analysis.long_runs import (
    ESTIMATOR_TEST,
    PIPELINE_TEST,
    SEC_8_2_METHOD,
    atari_claim,
    atari_section,
    budget_conclusion,
)

LEVELS = [("random", -20.4), ("human", -3.0), ("paper's TRPO (single path)", 20.9)]


def test_atari_claim_compares_the_interval_with_random_plus_the_margin():
    line = -20.4 + 0.1 * (20.9 + 20.4)  # -16.27
    assert atari_claim([-21.0, -20.5, -20.0], -20.4, 20.9)["line"] == pytest.approx(line)
    assert atari_claim([-21.0, -20.5, -20.0], -20.4, 20.9)["verdict"] == "fails"
    assert atari_claim([-5.0, -3.0, -4.0], -20.4, 20.9)["verdict"] == "holds"
    assert atari_claim([-20.0, -10.0, -18.0], -20.4, 20.9)["verdict"] == "undecided"
    one = atari_claim([-3.0, float("nan")], -20.4, 20.9)  # a NaN is no score
    assert one["seeds"] == 1 and one["verdict"] == "undecided" and one["mean"] == -3.0


CONFIGS = {
    SEC_8_2_METHOD: {"iterations": 100, "steps_per_iter": 20000, "delta": 0.01, "cg_damping": 0.1},
    ESTIMATOR_TEST: {"iterations": 100, "steps_per_iter": 20000, "delta": 0.01, "cg_damping": 0.1},
    PIPELINE_TEST: {"iterations": 500, "steps_per_iter": 4000, "ppo_epochs": 4,
                    "ppo_minibatch": 256, "num_envs": 16},
}  # fmt: skip


def _runs(scores: dict[str, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, progress = [], []
    for variant, finals in scores.items():
        for seed, final in enumerate(finals):
            runs.append({"env": "Pong-v5", "variant": variant, "method": variant, "seed": seed,
                         "env_steps": 2_000_000, "final_eval_return": -21.0,
                         "final_eval_sampled_return": final, "final_return": final,
                         "config": CONFIGS[variant]})  # fmt: skip
            steps = np.arange(1, 11) * 200_000
            progress.append(pd.DataFrame({
                "env": "Pong-v5", "variant": variant, "seed": seed, "env_steps": steps,
                "return_mean": np.linspace(-20.5, final, 10),
                "eval_return_mean": [np.nan] * 9 + [-21.0],
                "eval_sampled_return_mean": [np.nan] * 9 + [final],
                # TRPO: a full step (KL 0.006) in 8 of 10 iterations, a halved one in 2
                **({"linesearch_steps": [1] * 8 + [2] * 2, "step_fraction": [1.0] * 8 + [0.5] * 2,
                    "kl_mean": [0.006] * 8 + [0.0015] * 2} if variant != PIPELINE_TEST else
                   {"linesearch_steps": 0, "step_fraction": 1.0, "kl_mean": 0.003}),
            }))  # fmt: skip
    return pd.DataFrame(runs), pd.concat(progress, ignore_index=True)


def test_the_section_decides_sec_8_2_on_single_path_and_tests_the_estimator(tmp_path):
    runs, progress = _runs(
        {SEC_8_2_METHOD: [-20.4, -20.2, -20.3], ESTIMATOR_TEST: [-12.0, -9.5, -11.0]}
    )
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert f"{SEC_8_2_METHOD}: -20.3 [" in text and "against -16.3: **fails**" in text
    assert f"- {ESTIMATOR_TEST}: -10.8 [" in text and "**holds**" in text
    assert f"P({ESTIMATOR_TEST} > {SEC_8_2_METHOD}) = 1.00" in text
    assert "The data support the advantage estimator as the cause" in text
    # 3 seeds x 10 iterations, 8 of each 10 at the full step's KL 0.006
    assert "trpo-single-path took it in 24 of 30 iterations, at a mean KL of 0.0060 (0.60" in text


def test_an_estimator_that_fails_too_is_rejected_as_the_cause(tmp_path):
    runs, progress = _runs(
        {SEC_8_2_METHOD: [-20.4, -20.2, -20.3], ESTIMATOR_TEST: [-20.5, -20.1, -20.6]}
    )
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png"))
    assert "reject the advantage estimator as the sole cause" in text
    assert "support the advantage estimator" not in text
    assert "The budget remains the untested explanation." in text  # no pipeline test ran


FLAT = [-20.4, -20.2, -20.3]


def _section(tmp_path, scores: dict[str, list[float]]) -> str:
    runs, progress = _runs(scores)
    return "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png"))


def test_a_pipeline_that_learns_points_at_trpos_steps(tmp_path):
    text = _section(
        tmp_path,
        {SEC_8_2_METHOD: FLAT, ESTIMATOR_TEST: [-20.5, -20.1, -20.6], PIPELINE_TEST: [-8.0, -6.5]},
    )
    assert f"- {PIPELINE_TEST}: -7.2 [" in text
    assert (
        "takes 500 iterations of first-order steps (4 epochs of minibatch 256 on batches of "
        "4,000 steps) where trpo-single-path takes 100 KL-bounded steps"
    ) in text
    assert f"P({PIPELINE_TEST} > {SEC_8_2_METHOD}) = 1.00" in text
    assert "The pipeline is not the limit" in text
    assert f"since {ESTIMATOR_TEST}, with {PIPELINE_TEST}'s advantage estimator" in text
    assert "untested explanation" not in text
    assert "ppo took it" not in text  # no line search, no full step to size


def test_a_pipeline_that_fails_too_leaves_the_candidates_open(tmp_path):
    text = _section(
        tmp_path,
        {SEC_8_2_METHOD: FLAT, ESTIMATOR_TEST: [-20.5, -20.1], PIPELINE_TEST: [-20.9, -20.6]},
    )
    assert f"Not even {PIPELINE_TEST}'s many steps clear the line" in text
    assert "(each env plays 250 steps of a game per iteration in ppo)" in text
    assert "The pipeline is not the limit" not in text
    # without a learned-baseline TRPO that fails, no reason is drawn from it
    text = _section(tmp_path, {SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-5.0, -6.0]})
    assert "The pipeline is not the limit" in text and ESTIMATOR_TEST not in text


def test_without_the_estimator_runs_the_section_names_no_cause(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: [-20.4, -20.2, -20.3]})
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png"))
    assert "**fails**" in text and "Why single path" not in text


def test_one_seed_gives_no_interval_and_no_verdict(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: [-20.4, -20.2, -20.3], ESTIMATOR_TEST: [-19.9]})
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png"))
    assert "-19.9 (no interval below 2 seeds) over 1 seed against -16.3: **undecided**" in text
    assert "nan" not in text and "Undecided: the estimator" in text


def _budget(verdicts: dict[str, str]) -> str:
    return budget_conclusion(
        [
            {"long": m, "short": b, "verdict": v}
            for m, v in verdicts.items()
            for b in ("cem", "cma-es")
        ]
    )


def test_the_budget_is_rejected_on_claim_1s_subject_the_trpo_methods():
    all_fail = {"trpo-single-path": "fails", "trpo-vine": "fails", "natural-gradient": "fails"}
    assert _budget(all_fail).endswith("at 500K, nor does any other gradient method.")
    assert "reject the budget" in _budget({**all_fail, "natural-gradient": "undecided"})
    assert "natural-gradient: 0 of 2 comparisons fail, the rest undecided" in _budget(
        {**all_fail, "natural-gradient": "undecided"}
    )
    assert _budget({**all_fail, "trpo-vine": "undecided"}).startswith("Undecided")
    assert _budget({**all_fail, "natural-gradient": "holds"}).startswith("The data support")
