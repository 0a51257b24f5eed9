"""The long runs' page (trpo_bench.analysis.long_runs): the Atari claim, its figure and the
advantage estimator tested as the reason single path stays at random."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trpo_bench.analysis.atari_causes import continued_from, goes_on_from, imitation_check
from trpo_bench.analysis.committed_runs import read_committed
from trpo_bench.analysis.long_runs import (
    atari_section,
    budget_conclusion,
    dirty_text,
    linked_runs,
    provenance_text,
)
from trpo_bench.analysis.long_verdicts import (
    ESTIMATOR_TEST,
    PIPELINE_TEST,
    SEC_8_2_METHOD,
    atari_claim,
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


def _check(sampled: float, std: float, deterministic: float = 1.0, measured=()) -> dict:
    """An imitation check's JSON (trpo_bench.diagnostics.pong_imitation) in brief."""
    last = {"eval_sampled_return_mean": sampled, "eval_sampled_return_std": std,
            "eval_return_mean": deterministic, "frames_trained": 72_000,
            "heldout_accuracy": 0.84, "majority_share": 0.39}  # fmt: skip
    dep = {"kl_to_mean": 0.4, "dead_hidden_units": 3, "hidden_units": 20}
    return {
        "config": {"eval_episodes": 10, "steps_per_round": 40_000, "learning_rate": 1e-3},
        "rounds": [dict(last, eval_sampled_return_mean=-20.0), last],
        "teacher": {"return": 11.0}, "policy_parameters": 33_458, "wall_time_s": 600.0,
        "background": 87, "first_round_steps_per_epoch": 282,
        "first_round_heldout_accuracy_by_epoch": {"raw": [0.39] * 30, "centred": [0.4] * 40},
        "plateau_epochs": {"raw": None, "centred": 3},
        "state_dependence": {"imitation": dep, "untrained": dict(dep, kl_to_mean=2e-6)},
        "runs_measured": list(measured),
    }  # fmt: skip


def test_the_imitation_check_is_decided_on_its_last_rounds_sampled_episodes():
    line = -16.27
    # 10 episodes at std 3: half-width 1.96 * 3 / 3 = 1.96
    held = imitation_check(_check(-9.8, 3.0), line)
    assert held["verdict"] == "holds" and held["low"] == pytest.approx(-11.76)
    assert imitation_check(_check(-15.0, 3.0), line)["verdict"] == "undecided"
    assert imitation_check(_check(-19.0, 1.0), line)["verdict"] == "fails"


def test_an_imitation_above_the_line_rules_out_the_frames_and_the_network(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    text = "\n".join(
        atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png", _check(-9.8, 3.0))
    )
    assert "scores 1 deterministic and -9.8 [-11.8, -7.8] sampled over 10 episodes" in text
    assert (
        "round 0 sat at the prior (always the commonest action, 0.39 of the frames) throughout "
        "its 30 epochs, on the centred frames for 3 epochs (846 Adam steps at lr 0.001)" in text
    )
    assert "What the runs' policies learned" not in text  # no run measured
    assert "The data reject the frames and the paper's network as the limit" in text
    assert "although the network can play the game from these frames" in text
    assert "the frames, the paper's small network" not in text
    failed = "\n".join(
        atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png", _check(-20.0, 0.5))
    )
    assert "may be the limit" in failed and "the frames, the paper's small network" in failed


def test_runs_whose_actions_ignore_the_frame_are_named(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    ppo = {"run": "seed0", "method": "ppo", "seed": 0, "env_steps": 2_000_000,
           "kl_to_mean": 3e-5, "dead_hidden_units": 14, "hidden_units": 20,
           "action_shares": [0.0, 0.0, 0.24, 0.0, 0.09, 0.67]}  # fmt: skip
    check = _check(-9.8, 3.0, measured=[ppo])
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png", check))
    assert "is 0.400 for the imitating network (3 of 20 hidden units never firing)" in text
    assert (
        "ppo seed 0 at 2M steps: 3.0e-05, 14 of 20 hidden units never firing, moving up "
        "33%, down 67%, still 0%" in text
    )
    assert "they learned which moves to prefer, not when" in text
    assert "(frames centred)" not in text and "on the centred frames)" not in text
    centred = {**ppo, "method": SEC_8_2_METHOD, "atari_frame_offset": 87 / 255}
    check = _check(-9.8, 3.0, measured=[centred])
    check["state_dependence"]["untrained_centred"] = {**check["state_dependence"]["untrained"],
                                                      "kl_to_mean": 4e-4}  # fmt: skip
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png", check))
    assert "2.0e-06 untrained (4.0e-04 with the same weights on the centred frames)" in text
    assert f"{SEC_8_2_METHOD} seed 0 (frames centred) at 2M steps: 3.0e-05" in text
    check = _check(-9.8, 3.0, measured=[ppo, dict(ppo, seed=1, kl_to_mean=0.1)])
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png", check))
    assert "Only ppo seed 1 at 2M steps acts on the frame (at least 1% of the imitating " \
        "network's); the others' actions hardly depend on it" in text  # fmt: skip
    check = _check(-9.8, 3.0, measured=[dict(ppo, kl_to_mean=0.1)])
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png", check))
    assert "Each of them acts on the frame." in text and "prefer, not when" not in text


def _continued(short: pd.DataFrame, longer: pd.DataFrame) -> pd.DataFrame:
    """``longer``'s progress as a continued run's: the short run's rows (the same seeds and
    variant), then its own beyond the short run's last env step."""
    short = short[
        short["variant"].isin(set(longer["variant"])) & short["seed"].isin(set(longer["seed"]))
    ]
    later = longer[longer["env_steps"] > short["env_steps"].max()]
    return pd.concat([short, later], ignore_index=True).sort_values(["seed", "env_steps"])


def test_the_continued_runs_test_the_budget_on_the_same_seeds(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    longer, longer_progress = _runs({PIPELINE_TEST: [-12.0, -10.0]})
    longer["env_steps"] = 4_000_000
    longer_progress["env_steps"] *= 2
    longer_progress = _continued(progress, longer_progress)
    args = (runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png")
    text = "\n".join(atari_section(*args, longer=[("config/x.yaml", longer, longer_progress)]))
    assert "continued from 2M to 4M env steps, 2 times the budget" in text
    assert "seed 0: -20.9 -> -12.0; seed 1: -20.6 -> -10.0" in text
    assert "The data support the budget" in text
    longer["final_eval_sampled_return"] = [-20.8, -20.7]
    text = "\n".join(atari_section(*args, longer=[("config/x.yaml", longer, longer_progress)]))
    assert "2 times the budget does not lift ppo over the line" in text
    assert "the paper's 50M is 12.5 times it" in text


def test_runs_trained_again_from_the_start_are_not_called_a_continuation(tmp_path):
    """A longer grid of the same settings and seeds whose rows up to the short budget are not
    the short runs' (trained again, here on another machine): its text says so and gives
    each seed's own score at the short budget beside the first run's."""
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    runs["machine"] = "Intel Xeon"
    longer, longer_progress = _runs({PIPELINE_TEST: [-12.0, -10.0]})
    longer["env_steps"] = 4_000_000
    longer["machine"] = "AMD EPYC"
    longer_progress["env_steps"] *= 2
    longer_progress["eval_sampled_return_mean"] = np.tile(np.linspace(-21.0, -17.0, 10), 2)
    ppo = progress[progress["variant"] == PIPELINE_TEST]
    assert not goes_on_from(longer_progress, ppo)
    args = (runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png")
    text = "\n".join(atari_section(*args, longer=[("config/x.yaml", longer, longer_progress)]))
    assert "continued from" not in text
    assert (
        "the same settings and seeds trained again from the start to 4M env steps, not the "
        "runs at 2M continued: on another machine, where rounding" in text
    )
    # each seed at 2M: its own sampled evaluation (the 5th of 10, -19.2), then the first run's
    assert "seed 0: -19.2 at 2M (its first run: -20.9) -> -12.0; seed 1: -19.2 at 2M " \
        "(its first run: -20.6) -> -10.0" in text  # fmt: skip
    # the verdict at 2M on the runs trained again beside the first runs' (both fail here)
    assert "At 2M, trained again: -19.2 [-19.2, -19.2] over 2 seeds against -16.3: **fails**; " \
        "the first runs: **fails**, the same verdict on two machines." in text  # fmt: skip
    # the continued shape of the same runs is told apart
    assert goes_on_from(_continued(progress, longer_progress), ppo)
    runs["machine"] = "AMD EPYC"  # the same machine: no rounding to blame
    text = "\n".join(atari_section(*args, longer=[("config/x.yaml", longer, longer_progress)]))
    assert "not the runs at 2M continued: their numbers differ from the first runs'" in text
    assert "the first runs: **fails**, the same verdict." in text
    longer_progress["eval_sampled_return_mean"] = np.tile(np.linspace(-15.0, -5.0, 10), 2)
    text = "\n".join(atari_section(*args, longer=[("config/x.yaml", longer, longer_progress)]))
    assert "the first runs: **fails**: the verdict is not the same." in text


def test_the_frame_offset_is_tested_on_single_path_against_its_raw_frames(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    CONFIGS["centred"] = dict(CONFIGS[SEC_8_2_METHOD], atari_frame_offset=87 / 255)
    centred, centred_progress = _runs({"centred": [-9.0, -12.0, -10.5]})
    for frame in (centred, centred_progress):
        frame["variant"] = SEC_8_2_METHOD  # its own grid's single path
    args = (runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png")
    text = "\n".join(atari_section(*args, offset=("config/o.yaml", centred, centred_progress)))
    assert "with `atari_frame_offset: 0.341`" in text
    assert "-10.5 [" in text and "P(offset > raw frames) = 1.00" in text
    assert "The data support the network's optimisation on the raw frames as the cause" in text
    assert (tmp_path / "f.png").stat().st_size > 10_000
    centred["final_eval_sampled_return"] = [-20.5, -20.3, -20.6]
    text = "\n".join(atari_section(*args, offset=("config/o.yaml", centred, centred_progress)))
    assert "Centring the frames does not lift single path over the line" in text
    assert "below, runs test the raw frames' background apart, the rest untested." in text


def test_the_resets_are_tested_on_ppo_against_its_runs_with_resets(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    CONFIGS["carried"] = dict(CONFIGS[PIPELINE_TEST], continue_episodes=True)
    carried, carried_progress = _runs({"carried": [-9.0, -12.0]})
    for frame in (carried, carried_progress):
        frame["variant"] = PIPELINE_TEST  # its own grid's ppo
    carried_progress["episode_length_mean"] = 850.0
    args = (runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png")
    text = "\n".join(atari_section(*args, carried=("config/c.yaml", carried, carried_progress)))
    assert "every env plays only the first 250 steps of a game per iteration" in text  # 4000/16
    assert "its games in training last 850 steps on average" in text
    assert "seed 0: -20.9 -> -9.0; seed 1: -20.6 -> -12.0" in text
    assert "-10.5 [" in text and "P(carried over > resets) = 1.00" in text
    assert "The data support the resets as what holds it back" in text
    assert "with the resets it does not." in text
    assert "below, runs test the resets every iteration apart, the rest untested." in text
    carried["final_eval_sampled_return"] = [-20.8, -20.95]
    text = "\n".join(atari_section(*args, carried=("config/c.yaml", carried, carried_progress)))
    assert "the resets are rejected as what holds it at random here" in text


def test_linked_grids_give_their_committed_runs_and_progress_on_the_env(tmp_path):
    """A grid that ``longer_runs`` or ``offset_runs`` names: its committed runs on the env and
    their progress, in the shape atari_section takes (the committed PPO runs at 4M here)."""
    committed = Path(__file__).resolve().parents[1] / "docs/reproduction/long/pong-4m/runs"
    linked = tmp_path / "linked.yaml"
    linked.write_text(f"committed_runs: {committed}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"committed_runs: {tmp_path / 'nothing'}\n")
    grid = {"offset_runs": {"Pong-v5": str(linked)}, "longer_runs": {"Pong-v5": str(linked)}}
    for key in ("longer_runs", "offset_runs"):
        [(grid_file, runs, progress)] = linked_runs(grid, key, "Pong-v5")
        assert grid_file == str(linked) and sorted(runs["seed"]) == [0, 1]
        assert set(progress["env"]) == {"Pong-v5"} and progress["env_steps"].max() == 4_000_000
    assert linked_runs(grid, "offset_runs", "Swimmer-v5") == []  # names none for it
    assert linked_runs({"offset_runs": {"Pong-v5": str(empty)}}, "offset_runs", "Pong-v5") == []
    # a list: each grid with committed runs, in the order named
    listed = {"longer_runs": {"Pong-v5": [str(empty), str(linked), str(linked)]}}
    assert [g for g, _, _ in linked_runs(listed, "longer_runs", "Pong-v5")] == [str(linked)] * 2
    # what atari_section takes as ``longer``: they go on from the long grid's PPO runs
    mine, mine_progress = read_committed(committed.parents[1] / "runs")
    mine, mine_progress = (f[f["env"] == "Pong-v5"] for f in (mine, mine_progress))
    longer = linked_runs(grid, "longer_runs", "Pong-v5")
    text = "\n".join(atari_section(mine, mine_progress, "Pong-v5", LEVELS, tmp_path / "f.png",
                                   longer=longer))  # fmt: skip
    assert "**The budget, tested on ppo** (`" in text
    assert "continued from 2M to 4M env steps" in text


def test_a_continued_grid_goes_on_from_the_runs_of_its_identity(tmp_path):
    runs, _ = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    CONFIGS["centred"] = dict(CONFIGS[SEC_8_2_METHOD], atari_frame_offset=87 / 255)
    centred, _ = _runs({"centred": [-20.0, -20.5, -20.2]})
    centred["variant"] = SEC_8_2_METHOD  # its own grid's single path
    longer = centred[centred["seed"] < 2].assign(env_steps=4_000_000)
    longer["config"] = [dict(c, iterations=200) for c in longer["config"]]  # not identity
    empty = pd.DataFrame({"seed": []})
    pool = [(v, g, empty) for v, g in runs.groupby("variant")] + [("centred", centred, empty)]
    name, short, _ = continued_from(longer, pool, "config/c4m.yaml")
    assert name == "centred" and sorted(short["seed"]) == [0, 1]
    assert short["final_eval_sampled_return"].tolist() == [-20.0, -20.5]
    longer["config"] = [dict(c, delta=0.02) for c in longer["config"]]  # another run
    with pytest.raises(ValueError, match=r"config/c4m.yaml's runs go on from none of the runs"):
        continued_from(longer, pool, "config/c4m.yaml")


def test_a_continued_grid_of_one_seed_says_it_decides_nothing(tmp_path):
    runs, progress = _runs({SEC_8_2_METHOD: FLAT, PIPELINE_TEST: [-20.9, -20.6]})
    four, four_progress = _runs({PIPELINE_TEST: [-18.0, -20.0]})
    four["env_steps"] = 4_000_000
    four_progress["env_steps"] *= 2
    six, six_progress = _runs({PIPELINE_TEST: [-12.0]})
    six["env_steps"] = 6_000_000
    six_progress["env_steps"] *= 3
    six_progress["eval_sampled_return_mean"] = np.linspace(-20.0, -12.0, 10)  # every 600K
    four_progress, six_progress = (_continued(progress, p) for p in (four_progress, six_progress))
    longer = [("config/4m.yaml", four, four_progress), ("config/6m.yaml", six, six_progress)]
    text = "\n".join(atari_section(runs, progress, "Pong-v5", LEVELS, tmp_path / "f.png",
                                   longer=longer))  # fmt: skip
    assert text.index("`config/4m.yaml`") < text.index("`config/6m.yaml`")
    assert "from 2M to 6M env steps, 3 times the budget): final sampled evaluation seed 0: " \
        "-20.9 -> -12.0; at 6M -12.0 (no interval below 2 seeds)" in text  # fmt: skip
    assert "One seed gives no interval, so this decides nothing; it ends above the line at 6M." \
        in text  # fmt: skip
    assert "The data support the budget" not in text
    assert "Its last 5 evaluations (from 3.6M) average -13.8 (from -15.6 to -12.0), above the " \
        "line." in text  # fmt: skip
    assert "below, runs test the budget apart, the rest untested." in text


def test_the_grid_schema_takes_one_continued_grid_or_a_list_of_them():
    from snakemake.utils import validate

    from trpo_bench.grid import schema_error_message

    root = Path(__file__).resolve().parents[1]
    grid = yaml.safe_load((root / "config/long.yaml").read_text())
    schema = str(root / "workflow/schemas/config.schema.yaml")
    for good in ("config/a.yaml", ["config/a.yaml", "config/b.yaml"]):
        validate({**grid, "longer_runs": {"Pong-v5": good}}, schema)
    for bad in (3, [], ["a\x01.yaml"]):
        with pytest.raises(Exception) as caught:
            validate({**grid, "longer_runs": {"Pong-v5": bad}}, schema)
        assert schema_error_message(caught.value) == (
            f"key 'longer_runs.Pong-v5': {bad!r}: a grid file or a non-empty list of them "
            "(a path holds no control characters)"
        )


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


def test_a_linked_grids_runs_say_which_commit_and_machine_ran_them():
    runs = pd.DataFrame({"git_commit": ["abc", "abc", "def-dirty"], "machine": ["m", "m", "m"]})
    assert provenance_text(runs) == (
        "These runs: 2 at commit `abc` on m; 1 at commit `def-dirty` (a tree with uncommitted "
        "changes) on m."
    )
    assert "not recorded" in provenance_text(pd.DataFrame({"seed": [0]}))


def test_runs_from_a_dirty_tree_are_named_in_one_sentence():
    runs = pd.DataFrame(
        {"env": ["Pong-v5"] * 3 + ["Swimmer-v5"], "variant": ["ppo", "ppo", "ppo", "trpo-vine"],
         "seed": [0, 1, 2, 3], "git_commit": ["abc-dirty", "abc", "def-dirty", "abc-dirty"]}
    )  # fmt: skip
    text = dirty_text(runs)
    assert "3 of these 4 runs (Pong-v5 ppo seeds 0, 2; Swimmer-v5 trpo-vine seed 3)." in text
    assert dirty_text(runs.assign(git_commit="abc")) == ""


def test_the_candidates_tested_are_listed_as_prose():
    from trpo_bench.analysis.atari_causes import _listed

    assert _listed(["a"]) == "a" and _listed(["a", "b"]) == "a and b"
    assert _listed(["the budget", "x", "the resets"]) == "the budget, x and the resets"
