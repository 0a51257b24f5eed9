"""Episodes that run on across iterations (``continue_episodes``, issue 22's last Pong candidate).

By default every single-path iteration starts each env on a fresh seeded episode (sec. 5.1);
Pong PPO at 4,000 steps over 16 envs then trains only on each game's first 250 steps. With
``continue_episodes: true`` a batch goes on where the last one was cut: two batches of T steps
must be one batch of 2T steps cut in two, a resume must restore the envs mid-episode exactly
(the checkpoint holds their states as data), env workers change nothing, and a method whose
samples are not single paths refuses the key before any work starts.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from trpo_bench.config import ConfigError
from trpo_bench.envs.registry import EnvVector
from trpo_bench.methods.registry import METHODS
from trpo_bench.resolve import build_config
from trpo_bench.run.identity import identity_differences
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import train
from trpo_bench.sampling.single_path import collect_paths


def _cfg(env: str, method: str, **settings):
    base = {
        "iterations": 4,
        "steps_per_iter": 300,
        "num_envs": 2,
        "seed": 3,
        "checkpoint_every": 1,
        "eval_every": 2,
        "eval_episodes": 2,
        "mlflow": False,
        "continue_episodes": True,
        **settings,
    }
    return build_config(env, method, layers=[("test", base)])


def _progress(out) -> pd.DataFrame:
    rows = pd.read_csv(out / "progress.csv", keep_default_na=False)
    return rows.drop(columns=[c for c in rows.columns if c.endswith("_time_s")])


@pytest.mark.parametrize("env", ["CartPole-v1", "Pong-v5"])
def test_two_batches_carried_over_are_one_batch_cut_in_two(env):
    # Cart-pole episodes under a random policy last about 20 steps and Pong's far longer than a
    # batch, so a carried episode ends in the second batch with steps from the first.
    steps = 64 if env == "Pong-v5" else 40
    policy = build_learner(_cfg(env, "trpo-single-path", num_envs=2)).policy
    seeds = [11, 12]

    def batches(cut: bool):
        envs = EnvVector(env, 2)
        gen = torch.Generator().manual_seed(7)
        try:
            if not cut:
                return [collect_paths(envs, policy, 2 * steps, seeds, gen)]
            first = collect_paths(envs, policy, steps, seeds, gen)
            return [first, collect_paths(envs, policy, steps, [0, 0], gen, carry=first.cut)]
        finally:
            envs.close()

    (whole,) = batches(cut=False)
    first, second = batches(cut=True)
    for name in ("obs", "actions", "rewards", "terminated"):
        joined = np.concatenate([getattr(first, name), getattr(second, name)])
        np.testing.assert_array_equal(joined, getattr(whole, name), err_msg=name)
    assert first.episode_returns + second.episode_returns == whole.episode_returns
    assert first.episode_lengths + second.episode_lengths == whole.episode_lengths
    # The cut is a truncation in the first batch only; the whole batch runs through it.
    assert first.truncated[-1].all() and not whole.truncated[steps // 2 - 1].any()
    horizon = steps // 2
    np.testing.assert_array_equal(second.cut.lengths, whole.cut.lengths)
    if env == "CartPole-v1":  # an episode begun in the first batch ended in the second
        assert max(second.episode_lengths) > horizon
    else:  # no Pong point takes 32 steps: the carried returns count the first batch's points
        np.testing.assert_array_equal(second.cut.returns, whole.cut.returns)
        assert (whole.cut.lengths == 2 * horizon).all()


def test_carrying_episodes_changes_what_a_run_trains_on():
    out = {}
    for carry in (True, False):
        cfg = _cfg("CartPole-v1", "trpo-single-path", iterations=2, continue_episodes=carry)
        learner = build_learner(cfg)
        gen = torch.Generator().manual_seed(1)
        for it in range(2):
            batch = METHODS[cfg.method].sampler(learner.envs, learner.policy, cfg, it, None, gen)
        out[carry] = batch.episode_lengths
        learner.envs.close()
    # Iteration 1 with carried episodes ends those begun in iteration 0: other lengths.
    assert out[True] != out[False]


@pytest.mark.parametrize(
    "env, method, settings",
    [
        ("InvertedPendulum-v5", "trpo-single-path", {}),
        ("InvertedPendulum-v5", "ppo", {"vf_epochs": 2, "ppo_epochs": 2}),
        ("Hopper-v5", "trpo-gae", {"hidden_sizes": [8], "vf_epochs": 1}),
        ("Pong-v5", "trpo-single-path", {"steps_per_iter": 96, "eval_every": 0, "iterations": 3}),
    ],
)
def test_a_resume_mid_episode_equals_the_uninterrupted_run(
    env, method, settings, tmp_path, crash_at
):
    cfg = _cfg(env, method, **settings)
    quiet = lambda _m: None  # noqa: E731
    train(cfg, tmp_path / "ref", log=quiet)
    disarm = crash_at(2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "run", log=quiet)
    disarm()
    train(cfg, tmp_path / "run", log=quiet)  # a fresh vector, put back mid-episode
    pd.testing.assert_frame_equal(_progress(tmp_path / "run"), _progress(tmp_path / "ref"))
    if env != "Pong-v5":  # the run did carry episodes over: afresh it is another run
        fresh = _cfg(env, method, **settings, continue_episodes=False)
        train(fresh, tmp_path / "fresh", log=quiet)
        assert not _progress(tmp_path / "fresh").equals(_progress(tmp_path / "ref"))


def test_env_workers_change_nothing_with_carried_episodes(tmp_path):
    runs = {}
    for k in (1, 2):
        cfg = _cfg("InvertedPendulum-v5", "trpo-single-path", num_envs=4, env_workers=k)
        train(cfg, tmp_path / f"k{k}", log=lambda _m: None)
        runs[k] = _progress(tmp_path / f"k{k}")
    pd.testing.assert_frame_equal(runs[2], runs[1], check_exact=True)


@pytest.mark.parametrize("method", ["trpo-vine", "cem", "cma-es"])
def test_a_method_without_single_paths_refuses_the_key_naming_those_that_take_it(method):
    with pytest.raises(ConfigError) as e:
        _cfg("CartPole-v1", method)
    message = str(e.value)
    assert "'continue_episodes'" in message and method in message
    assert "trpo-single-path" in message and "ppo" in message and "trpo-vine," not in message


def test_an_env_whose_state_is_not_data_refuses_the_key_before_any_work():
    # Ant's snapshot is a copy of the whole MjData (its step reads derived quantities): exact
    # in memory, not data for a checkpoint.
    with pytest.raises(ConfigError) as e:
        _cfg("Ant-v5", "trpo-single-path")
    assert "'continue_episodes'" in str(e.value) and "Ant-v5" in str(e.value)
    assert "whole MjData" in str(e.value) and "with false" in str(e.value)
    assert _cfg("Ant-v5", "trpo-single-path", continue_episodes=False).env == "Ant-v5"


def test_a_run_without_the_key_is_the_run_it_was():
    cfg = _cfg("CartPole-v1", "ppo", continue_episodes=False).to_dict()
    older = {k: v for k, v in cfg.items() if k != "continue_episodes"}
    assert identity_differences(cfg, older) == []
    assert identity_differences({**cfg, "continue_episodes": True}, older) != []
