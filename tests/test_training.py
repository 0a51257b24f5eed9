"""Whole runs: reproducibility, learning, result files and MLflow."""

import json

import pandas as pd
import pytest

from trpo_bench.cli import main
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import load_policy
from trpo_bench.run.trainer import train

TIMING = ["wall_time_s", "sample_time_s", "update_time_s", "eval_protocol_time_s"]


def _run(tmp_path, name, env="CartPole-v1", **over):
    cfg = build_config(
        env, over.pop("method", "trpo-single-path"), layers=[("test", {"mlflow": False, **over})]
    )
    out = tmp_path / name
    summary = train(cfg, out, log=lambda _m: None)
    return out, summary


def test_same_seed_gives_identical_progress(tmp_path):
    kw = dict(iterations=3, steps_per_iter=1500, num_envs=3, seed=7)
    a, _ = _run(tmp_path, "a", env="InvertedPendulum-v5", **kw)
    b, _ = _run(tmp_path, "b", env="InvertedPendulum-v5", **kw)
    c, _ = _run(tmp_path, "c", env="InvertedPendulum-v5", **{**kw, "seed": 8})
    pa, pb, pc = (pd.read_csv(p / "progress.csv").drop(columns=TIMING) for p in (a, b, c))
    pd.testing.assert_frame_equal(pa, pb)
    assert not pa["return_mean"].equals(pc["return_mean"])  # the seed matters


def test_result_files(tmp_path):
    out, _ = _run(tmp_path, "r", iterations=2, steps_per_iter=1000, num_envs=2)
    progress = pd.read_csv(out / "progress.csv")
    for col in [
        "iteration",
        "env_steps",
        "wall_time_s",
        "return_mean",
        "return_std",
        "episodes",
        "surrogate_gain",
        "kl_mean",
        "kl_max",
        "linesearch_steps",
        "step_accepted",
        "entropy",
        "expected_gain",
        "return_change",
    ]:
        assert col in progress.columns, col
    assert list(progress["iteration"]) == [0, 1]
    assert list(progress["env_steps"]) == [1000, 2000]  # exactly the budget
    data = json.loads((out / "summary.json").read_text())
    assert data["status"] == "completed"
    assert data["config"]["steps_per_iter"] == 1000
    assert data["env_steps"] == 2000
    assert "torch" in data["versions"]
    policy = load_policy(out / "policy.pt")
    assert policy.discrete
    assert not list(out.glob(".*.tmp"))  # no temp files left


@pytest.mark.slow
def test_learns_inverted_pendulum(tmp_path):
    # The paper's cart-pole (linear policy): >= 900 within ~2 minutes here.
    _, summary = _run(
        tmp_path, "ip", env="InvertedPendulum-v5", iterations=40, steps_per_iter=5000, seed=0
    )
    assert summary["best_return"] >= 900, summary
    assert summary["final_return"] >= 900, summary


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
    _, summary = _run(tmp_path, "cp", iterations=30, steps_per_iter=4000, seed=0)
    assert summary["final_return"] >= 195, summary


def test_cli_run_is_in_mlflow(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "runs" / "cp"
    code = main(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--seed",
            "3",
            "--out",
            str(out),
            "--iterations",
            "3",
            "--steps-per-iter",
            "600",
            "--set",
            "num_envs=2",
            "--set",
            "experiment=test-exp",
        ]
    )
    assert code == 0
    # The compact progress line: iterations of those planned, return, rate, time and ETA.
    last = capsys.readouterr().out.splitlines()[-2]  # the last iteration's, before "done: ..."
    assert last.startswith("[CartPole-v1 trpo-single-path s3] 3/3 100% | ret "), last
    assert " steps/s | " in last and last.endswith(", ETA 0s"), last
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("test-exp")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    # A short name for the runs table; the whole name in the `run` tag.
    assert run.info.run_name == "CartPole/sp/s3"
    assert run.data.tags["run"] == "CartPole-v1/trpo-single-path/seed3"
    assert run.data.tags["env"] == "CartPole-v1" and run.data.tags["seed"] == "3"
    assert run.data.tags["method"] == "trpo-single-path" and run.data.tags["git_commit"]
    assert run.data.params["steps_per_iter"] == "600" and run.data.params["delta"] == "0.01"
    for metric in ("return_mean", "kl_mean", "env_steps", "surrogate_gain"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [0, 1, 2], metric
    steps = [m.value for m in client.get_metric_history(run.info.run_id, "env_steps")]
    assert steps == [600, 1200, 1800]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"progress.csv", "summary.json", "policy.pt"} <= artifacts


def test_chunked_objective_equals_one_pass():
    import torch

    from trpo_bench.run.learner import build_learner
    from trpo_bench.run.trainer import iteration_generator
    from trpo_bench.sampling.single_path import SinglePathObjective, sample_single_path

    cfg = build_config(
        "Hopper-v5", "trpo-single-path", layers=[("t", {"steps_per_iter": 1000, "num_envs": 4})]
    )
    learner = build_learner(cfg)
    sample = sample_single_path(
        learner.envs, learner.policy, cfg, 0, None, iteration_generator(0, 0)
    )
    whole = sample.objective
    chunked = SinglePathObjective(
        learner.policy, whole.kl_obs, whole.actions, whole.advantages, chunk=128
    )
    params = learner.policy.policy_parameters()
    with torch.no_grad():
        for p in params:
            p.add_(0.01)  # away from theta_old, so ratios and KLs are not trivial
    v1, g1 = whole.surrogate_and_grad(learner.policy, params)
    v2, g2 = chunked.surrogate_and_grad(learner.policy, params)
    assert v1 == pytest.approx(v2, rel=1e-5) and abs(v1) > 1e-6
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-7)
    s1, kl1 = whole.evaluate(learner.policy)
    s2, kl2 = chunked.evaluate(learner.policy)
    assert s1 == pytest.approx(s2, rel=1e-5)
    torch.testing.assert_close(kl1, kl2)
    assert kl1.mean() > 0
