"""The imitation check of Pong's pipeline (trpo_bench.diagnostics.pong_imitation)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from trpo_bench.core.policies import CategoricalCNNPolicy
from trpo_bench.diagnostics import pong_imitation as pi
from trpo_bench.envs.registry import make_env
from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train


def _ram(ball: int, paddle: int) -> np.ndarray:
    ram = np.zeros(128, dtype=np.uint8)
    ram[pi.RAM_BALL_Y], ram[pi.RAM_PLAYER_Y] = ball, paddle
    return ram


def test_the_tracker_moves_its_paddle_toward_the_ball():
    aim = 100 + pi.TRACKER_OFFSET
    assert pi.tracker_action(_ram(0, 100)) == pi.NOOP  # no ball in play
    assert pi.tracker_action(_ram(aim + pi.TRACKER_DEADBAND + 1, 100)) == pi.DOWN
    assert pi.tracker_action(_ram(aim - pi.TRACKER_DEADBAND - 1, 100)) == pi.UP
    assert pi.tracker_action(_ram(aim + pi.TRACKER_DEADBAND, 100)) == pi.NOOP
    assert pi.tracker_action(_ram(aim - pi.TRACKER_DEADBAND, 100)) == pi.NOOP


def test_the_teacher_wins_the_evaluation_game():
    """Reading the RAM, the scripted player wins the evaluation's game (measured: 21-10 in
    3,555 steps); with a wrong RAM byte or action meaning it would lose 21-0 in about 764 steps
    as the untrained policies do."""
    score, length = pi.teacher_score()
    assert score > 0, score
    assert length > 2000, length


def test_collect_labels_every_frame_with_the_teachers_action():
    env = make_env(pi.ENV_ID)
    rng = np.random.default_rng(0)
    frames, labels, _ = pi.collect(env, 600, rng, random_share=0.25)
    assert frames.shape == (600, 4, 52, 40) and frames.dtype == np.uint8
    assert set(np.unique(labels)) <= {pi.NOOP, pi.UP, pi.DOWN}
    # The paddle follows the ball both ways: both moves are common labels.
    assert np.mean(labels == pi.UP) > 0.1 and np.mean(labels == pi.DOWN) > 0.1
    # Acting by the network, the frames move on as the game does (the stack is not stale).
    policy = CategoricalCNNPolicy(env.observation_space.shape, int(env.action_space.n))
    frames2, labels2, _ = pi.collect(
        env, 300, rng, policy=policy, generator=torch.Generator().manual_seed(0)
    )
    assert len(frames2) == len(labels2) == 300
    assert not np.array_equal(frames2[100], frames2[200])
    env.close()


def test_fit_teaches_the_papers_network_a_rule_read_from_the_frames():
    """Frames with a bright block in the top half are labelled UP, in the bottom half DOWN:
    after ten epochs the network picks the label on frames it has not seen (an untrained one
    is right on about half; measured: it sits at the prior for about 5 epochs, then learns)."""
    rng = np.random.default_rng(1)

    def frames(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.full((n, 4, 52, 40), 60, dtype=np.uint8)
        rows = rng.integers(0, 48, n)
        cols = rng.integers(0, 36, n)
        for i in range(n):
            x[i, :, rows[i] : rows[i] + 4, cols[i] : cols[i] + 4] = 230
        return x, np.where(rows + 2 < 26, pi.UP, pi.DOWN)

    x, y = frames(2048)
    hx, hy = frames(512)
    torch.manual_seed(0)
    policy = CategoricalCNNPolicy((4, 52, 40), 6)
    before = pi.accuracy(policy, hx, hy)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = [pi.fit_epoch(policy, x, y, 64, generator, opt) for _ in range(10)]
    after = pi.accuracy(policy, hx, hy)
    assert before < 0.7, before
    assert after > 0.9, (after, losses)
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_centred_network_folds_into_the_plain_one_on_raw_frames():
    """Training on frames minus the background searches the plain network's own function
    class: folded, the first convolution's bias absorbs the offset (same numbers)."""
    torch.manual_seed(0)
    centred = CategoricalCNNPolicy((4, 52, 40), 6, frame_offset=pi.PONG_BACKGROUND / 255.0)
    with torch.no_grad():
        for p in centred.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not the initial biases: a trained network
    frames = torch.randint(0, 256, (300, 4, 52, 40), dtype=torch.uint8)
    plain = pi.fold_offset(centred, (4, 52, 40))
    assert plain.frame_offset == 0.0
    want, got = centred.dist_params(frames)[0], plain.dist_params(frames)[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    unfolded = CategoricalCNNPolicy((4, 52, 40), 6)
    unfolded.load_state_dict(centred.state_dict())  # without the fold: other numbers
    assert (unfolded.dist_params(frames)[0] - want).abs().max() > 1e-3


def test_state_dependence_is_zero_for_a_policy_that_ignores_the_frame():
    torch.manual_seed(0)
    policy = CategoricalCNNPolicy((4, 52, 40), 6)
    frames = np.random.default_rng(0).integers(0, 256, (200, 4, 52, 40), dtype=np.uint8)
    with torch.no_grad():
        policy.logits_net[-1].weight.zero_()  # the logits are the head's bias alone
        policy.logits_net[-1].bias.copy_(torch.tensor([0.0, 0.0, 2.0, 0.0, 0.0, 1.0]))
    flat = pi.state_dependence(policy, frames)
    assert flat["kl_to_mean"] == pytest.approx(0.0, abs=1e-12)
    assert flat["action_shares"][2] == pytest.approx(
        np.exp(2) / (np.exp(2) + np.exp(1) + 4), abs=1e-4
    )
    with torch.no_grad():
        policy.logits_net[-1].weight.normal_(0.0, 3.0)
    assert pi.state_dependence(policy, frames)["kl_to_mean"] > 0.01
    assert 0 <= flat["dead_hidden_units"] <= flat["hidden_units"] == 20


def test_the_plateau_is_counted_until_accuracy_leaves_the_prior():
    assert pi.plateau_epochs([0.38, 0.39, 0.40, 0.46, 0.7], majority=0.39) == 3
    assert pi.plateau_epochs([0.38, 0.39], majority=0.39) is None


def test_the_command_rejects_bad_sizes_before_any_work(tmp_path, capsys):
    out = tmp_path / "imitation.json"
    with pytest.raises(SystemExit) as info:
        pi.main(["--out", str(out), "--rounds", "0"])
    assert info.value.code == 2
    assert "--rounds 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pi.main(["--out", str(out), "--measure", str(tmp_path)])
    assert f"--measure: no policy.pt in {tmp_path}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pi.main(["--out", str(out), "--first-epochs", "0", "--epochs", "-1"])
    err = capsys.readouterr().err
    assert "--first-epochs 0, --epochs -1" in err and "at least" in err
    assert not out.exists()


def test_a_small_check_writes_its_result(tmp_path):
    out = tmp_path / "imitation.json"
    run = tmp_path / "run"
    cfg = build_config("Pong-v5", "trpo-single-path", layers=[("t", {
        "iterations": 1, "steps_per_iter": 800, "num_envs": 2, "mlflow": False})])  # fmt: skip
    train(cfg, run, log=lambda _m: None)
    args = ["--steps-per-round", "400", "--rounds", "2", "--first-epochs", "2", "--epochs", "1"]
    args += ["--eval-episodes", "2", "--raw-probe-epochs", "3", "--measure", str(run)]
    # as a user runs it (the docstring's and docs/reproduction/long.md's command)
    module = ["-m", "trpo_bench.diagnostics.pong_imitation"]
    done = subprocess.run([sys.executable, *module, "--out", str(out), *args], timeout=600)
    assert done.returncode == 0
    result = json.loads(out.read_text())
    assert [r["round"] for r in result["rounds"]] == [0, 1]
    assert result["rounds"][1]["frames_trained"] > result["rounds"][0]["frames_trained"]
    assert result["teacher"]["return"] > 0
    assert result["policy_parameters"] == 33_458
    assert result["config"]["first_epochs"] == 2 and result["config"]["eval_episodes"] == 2
    curves = result["first_round_heldout_accuracy_by_epoch"]
    assert len(curves["centred"]) == 2 and len(curves["raw"]) == 3
    assert set(result["plateau_epochs"]) == {"centred", "raw"}
    dependence = result["state_dependence"]
    assert set(dependence) == {"untrained", "untrained_centred", "imitation"}
    # the same weights on other inputs: another distribution of actions over the frames
    assert dependence["untrained_centred"]["kl_to_mean"] != dependence["untrained"]["kl_to_mean"]
    (measured,) = result["runs_measured"]
    assert measured["method"] == "trpo-single-path" and measured["env_steps"] == 800
    assert measured["atari_frame_offset"] == 0.0
    assert measured["hidden_units"] == 20 and measured["kl_to_mean"] >= 0.0
    for r in result["rounds"]:
        assert 0.0 <= r["heldout_accuracy"] <= 1.0
        assert -21.0 <= r["eval_sampled_return_mean"] <= 21.0
