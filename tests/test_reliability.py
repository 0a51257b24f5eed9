"""Fault injection (issue 8): kills, signals, concurrent logging, MLflow down, numerical faults."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from trpo_bench.envs.registry import EnvVector
from trpo_bench.methods.steps import trpo_step
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator, train
from trpo_bench.sampling.single_path import sample_single_path

TIMING = ["wall_time_s", "sample_time_s", "update_time_s", "eval_protocol_time_s"]
RUN = dict(env="CartPole-v1", iterations=10, steps_per_iter=3000, num_envs=2, seed=5)


def _cli(out: Path, db: Path, extra=()):
    return [
        sys.executable,
        "-m",
        "trpo_bench",
        "train",
        "--env",
        RUN["env"],
        "--seed",
        str(RUN["seed"]),
        "--out",
        str(out),
        "--iterations",
        str(RUN["iterations"]),
        "--steps-per-iter",
        str(RUN["steps_per_iter"]),
        "--set",
        f"num_envs={RUN['num_envs']}",
        "--set",
        "checkpoint_every=2",
        "--set",
        f"mlflow_uri=sqlite:///{db}",
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the same config, in process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    cfg = build_config(
        RUN["env"],
        "trpo-single-path",
        layers=[
            (
                "t",
                {
                    "iterations": RUN["iterations"],
                    "steps_per_iter": RUN["steps_per_iter"],
                    "num_envs": RUN["num_envs"],
                    "seed": RUN["seed"],
                    "checkpoint_every": 2,
                    "mlflow": False,
                },
            )
        ],
    )
    train(cfg, out, log=lambda _m: None)
    return pd.read_csv(out / "progress.csv").drop(columns=TIMING)


def _wait_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    start = time.time()
    while time.time() - start < timeout:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        path = out / "progress.csv"
        if path.exists() and len(path.read_text().splitlines()) - 1 >= n:
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for progress")


def _mlflow_steps(db: Path) -> list[int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("trpo-bench")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    return [m.step for m in client.get_metric_history(run.info.run_id, "return_mean")]


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path, reference):
    out, db = tmp_path / "run", tmp_path / "mlflow.db"
    proc = subprocess.Popen(_cli(out, db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_rows(out, 5, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert (out / "checkpoint.pt").exists()
    done = subprocess.run(_cli(out, db), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    resumed = pd.read_csv(out / "progress.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(resumed, reference)
    assert _mlflow_steps(db) == list(range(RUN["iterations"]))  # each step logged once


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes(tmp_path, reference):
    out, db = tmp_path / "run", tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        _cli(out, db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _wait_rows(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resumes from its checkpoint" in err and "Traceback" not in err
    summary = (out / "summary.json").read_text()
    assert '"status": "interrupted"' in summary
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    done_rows = len(pd.read_csv(out / "progress.csv"))
    assert len(state["rows"]) in (done_rows, done_rows - 1)  # the last complete iteration
    done = subprocess.run(_cli(out, db), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "progress.csv").drop(columns=TIMING), reference)
    assert '"status": "completed"' in (out / "summary.json").read_text()
    assert _mlflow_steps(db) == list(range(RUN["iterations"]))


@pytest.mark.slow
def test_sixteen_concurrent_jobs_share_one_sqlite_store(tmp_path):
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    procs = []
    for seed in range(16):
        cmd = [
            sys.executable,
            "-m",
            "trpo_bench",
            "train",
            "--env",
            "CartPole-v1",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / f"s{seed}"),
            "--iterations",
            "3",
            "--steps-per-iter",
            "300",
            "--set",
            "num_envs=1",
            "--set",
            f"mlflow_uri=sqlite:///{db}",
            "--set",
            "experiment=crowd",
            "--quiet",
        ]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not any("MLFLOW LOGGING FAILED" in e for e in errors), errors
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exps = [e for e in client.search_experiments() if e.name == "crowd"]
    assert len(exps) == 1  # created once, without a race
    runs = client.search_runs([exps[0].experiment_id], max_results=100)
    assert sorted(r.data.tags["seed"] for r in runs) == sorted(str(s) for s in range(16))
    for run in runs:
        assert run.info.status == "FINISHED"
        for metric in ("return_mean", "kl_mean", "env_steps"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == [0, 1, 2], (run.data.tags["seed"], metric)


def test_training_completes_and_warns_when_mlflow_is_unreachable(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = build_config(
        "CartPole-v1",
        "trpo-single-path",
        layers=[
            (
                "t",
                {
                    "iterations": 2,
                    "steps_per_iter": 400,
                    "num_envs": 2,
                    "mlflow_uri": f"sqlite:///{blocker}/mlflow.db",
                },
            )
        ],
    )
    with pytest.warns(UserWarning, match="MLFLOW LOGGING FAILED"):
        summary = train(cfg, tmp_path / "run", log=lambda _m: None)
    assert summary["status"] == "completed" and summary["iterations_done"] == 2
    assert len(pd.read_csv(tmp_path / "run" / "progress.csv")) == 2
    assert (tmp_path / "run" / "policy.pt").exists()
    assert "MLFLOW LOGGING FAILED" in capsys.readouterr().err


def _batch():
    cfg = build_config(
        "CartPole-v1", "trpo-single-path", layers=[("t", {"steps_per_iter": 800, "num_envs": 2})]
    )
    learner = build_learner(cfg)
    gen = iteration_generator(0, 0)
    sample = sample_single_path(learner.envs, learner.policy, cfg, 0, None, gen)
    return cfg, learner.policy, sample.objective


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_advantages_reject_the_step(bad):
    cfg, policy, objective = _batch()
    objective.advantages[3] = bad
    before = parameters_to_vector(policy.parameters()).detach().clone()
    stats = trpo_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    assert not stats.step_accepted
    assert stats.reject_reason == "non-finite surrogate or gradient"
    assert torch.equal(parameters_to_vector(policy.parameters()).detach(), before)


def test_non_positive_curvature_rejects_the_step(monkeypatch):
    import trpo_bench.methods.steps as steps

    cfg, policy, objective = _batch()
    # A "Fisher" that is negative definite: CG stops at once and s'As <= 0.
    monkeypatch.setattr(steps, "fisher_vector_product", lambda *_a, **_k: lambda v: -v)
    before = parameters_to_vector(policy.parameters()).detach().clone()
    stats = trpo_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    assert not stats.step_accepted and "s'As" in stats.reject_reason
    assert torch.equal(parameters_to_vector(policy.parameters()).detach(), before)


def test_nan_reward_from_env_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    original = EnvVector.step
    calls = {"n": 0}

    def faulty(self, actions, n=None):
        result = original(self, actions, n)
        calls["n"] += 1
        if calls["n"] == 50:  # one NaN reward during the first iteration
            result.reward[0] = np.nan
        return result

    monkeypatch.setattr(EnvVector, "step", faulty)
    cfg = build_config(
        "CartPole-v1",
        "trpo-single-path",
        layers=[("t", {"iterations": 3, "steps_per_iter": 400, "num_envs": 2, "mlflow": False})],
    )
    summary = train(cfg, tmp_path / "run", log=lambda _m: None)
    rows = pd.read_csv(tmp_path / "run" / "progress.csv", keep_default_na=False)
    assert summary["status"] == "completed" and len(rows) == 3
    assert rows["step_accepted"].tolist() == [0, 1, 1]
    assert rows["reject_reason"][0] == "non-finite surrogate or gradient"


def test_bad_config_leaves_an_existing_run_untouched(tmp_path):
    from trpo_bench.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                "CartPole-v1",
                "--out",
                str(out),
                "--iterations",
                "1",
                "--steps-per-iter",
                "200",
                "--set",
                "mlflow=false",
                "--quiet",
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--env", "CartPole-v1", "--out", str(out), "--set", "delta=-1"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_foreign_checkpoint_is_a_clear_error(tmp_path, capsys):
    from trpo_bench.cli import main

    out = tmp_path / "run"
    args = [
        "train",
        "--env",
        "CartPole-v1",
        "--out",
        str(out),
        "--iterations",
        "2",
        "--steps-per-iter",
        "200",
        "--set",
        "mlflow=false",
        "--set",
        "checkpoint_every=1",
        "--quiet",
    ]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*args, "--set", "delta=0.02"]) == 2
    err = capsys.readouterr().err
    assert "another config (differing: delta)" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
