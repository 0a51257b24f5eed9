"""The evaluation protocol: one yardstick for every method, outside the sample budget."""

import json
import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from trpo_bench.core.policies import make_policy
from trpo_bench.envs.registry import EnvVector
from trpo_bench.resolve import build_config
from trpo_bench.run.evaluation import EVAL_SEED, PolicyEvaluator, is_due, run_episodes
from trpo_bench.run.learner import load_policy
from trpo_bench.run.trainer import train

EVAL_COLUMNS = [
    "eval_return_mean",
    "eval_sampled_return_mean",
    "eval_forward_reward_mean",
    "eval_env_steps",
]


def _run(tmp_path, name, env="InvertedPendulum-v5", **over):
    cfg = build_config(
        env, over.pop("method", "trpo-single-path"), layers=[("test", {"mlflow": False, **over})]
    )
    out = tmp_path / name
    train(cfg, out, log=lambda _m: None)
    return out


def test_is_due_every_n_iterations_and_after_the_last():
    assert [i for i in range(7) if is_due(i, 7, 3)] == [2, 5, 6]
    assert [i for i in range(7) if is_due(i, 7, 0)] == [6]
    assert [i for i in range(3) if is_due(i, 3, 1)] == [0, 1, 2]


def test_evaluation_neither_changes_training_nor_counts_as_samples(tmp_path):
    kw = dict(iterations=4, steps_per_iter=1200, num_envs=3, seed=3, eval_episodes=2)
    often = _run(tmp_path, "often", eval_every=1, **kw)
    last = _run(tmp_path, "last", eval_every=0, **kw)
    a, b = pd.read_csv(often / "progress.csv"), pd.read_csv(last / "progress.csv")
    train_cols = ["env_steps", "return_mean", "kl_mean", "surrogate_after", "entropy"]
    pd.testing.assert_frame_equal(a[train_cols], b[train_cols])
    assert list(a["env_steps"]) == [1200, 2400, 3600, 4800]  # evaluation steps not counted
    assert a["eval_return_mean"].notna().all()
    assert list(b["eval_return_mean"].notna()) == [False, False, False, True]
    # the last evaluation is of the same final policy in both runs
    assert a["eval_return_mean"].iloc[-1] == b["eval_return_mean"].iloc[-1]
    assert a["eval_sampled_return_mean"].iloc[-1] == b["eval_sampled_return_mean"].iloc[-1]
    assert (a["eval_env_steps"] > 0).all()
    summary = json.loads((often / "summary.json").read_text())
    assert summary["final_eval_return"] == a["eval_return_mean"].iloc[-1]
    assert summary["average_eval_return"] == pytest.approx(a["eval_return_mean"].mean())


def test_final_evaluation_is_of_the_saved_policy_on_the_fixed_seeds(tmp_path):
    out = _run(tmp_path, "r", iterations=2, steps_per_iter=1000, num_envs=2, eval_episodes=3)
    progress = pd.read_csv(out / "progress.csv")
    policy = load_policy(out / "policy.pt")
    evaluator = PolicyEvaluator("InvertedPendulum-v5", 3, None)
    again = evaluator(policy, iteration=1)
    evaluator.close()
    for col in ("eval_return_mean", "eval_sampled_return_mean", "eval_episode_length_mean"):
        assert again[col] == progress[col].iloc[-1], col


def test_forward_reward_and_distance_agree_on_hopper():
    # Hopper-v5: reward_forward = (x_after - x_before) / dt, so its sum over an episode is the
    # distance travelled over dt, whatever the actions.
    envs = EnvVector("Hopper-v5", 2)
    rng = np.random.default_rng(0)
    batch = run_episodes(envs, lambda obs: rng.uniform(-1, 1, (len(obs), 3)), [EVAL_SEED, 5])
    dt = envs.envs[0].unwrapped.dt
    envs.close()
    assert np.all(np.abs(batch.x_distance) > 0)
    np.testing.assert_allclose(batch.forward_reward * dt, batch.x_distance, rtol=1e-9, atol=1e-12)


def test_episode_returns_equal_a_plain_gymnasium_loop():
    torch.manual_seed(0)
    env = gym.make("InvertedPendulum-v5")
    policy = make_policy(env.observation_space, env.action_space, [], 0.0, False)
    with torch.no_grad():
        policy.mean_net[0].weight.copy_(torch.tensor([[0.5, -1.0, 0.3, -0.2]]))
    envs = EnvVector("InvertedPendulum-v5", 3)
    evaluator = PolicyEvaluator.__new__(PolicyEvaluator)
    evaluator.envs, evaluator.seeds = envs, [EVAL_SEED + k for k in range(3)]
    row = evaluator(policy, iteration=0, sampled=False)
    expected = []
    for k in range(3):
        obs, _ = env.reset(seed=EVAL_SEED + k)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                mean = policy.mean_net(torch.as_tensor(obs, dtype=torch.float32)).numpy()
            obs, r, term, trunc, _ = env.step(np.clip(mean, -3.0, 3.0))
            total, done = total + r, term or trunc
        expected.append(total)
    assert row["eval_return_mean"] == pytest.approx(np.mean(expected))
    assert math.isnan(row["eval_sampled_return_mean"])  # not asked for
    assert math.isnan(row["eval_forward_reward_mean"])  # cart-pole has no forward term
    envs.close()


@pytest.mark.parametrize("method", ["cem", "cma-es"])
def test_derivative_free_runs_are_evaluated_deterministically(tmp_path, method):
    out = _run(
        tmp_path, method, method=method, iterations=2, steps_per_iter=3000, num_envs=4,
        eval_every=1, eval_episodes=2,
    )  # fmt: skip
    progress = pd.read_csv(out / "progress.csv")
    assert progress["eval_return_mean"].notna().all()
    assert progress["eval_sampled_return_mean"].isna().all()  # the searched policy acts by its mean
    assert list(progress["env_steps"]) == sorted(progress["env_steps"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_eval_return"] == progress["eval_return_mean"].iloc[-1]
    # the evaluation is of the search mean that policy.pt holds
    evaluator = PolicyEvaluator("InvertedPendulum-v5", 2, None)
    row = evaluator(load_policy(out / "policy.pt"), iteration=1, sampled=False)
    evaluator.close()
    assert row["eval_return_mean"] == progress["eval_return_mean"].iloc[-1]
