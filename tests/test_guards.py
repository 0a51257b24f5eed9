"""No method reports a NaN or collapsed policy as a normal result (issue 13, point 3).

Every step rule ends in ``steps.guard_step``: a step after which the parameters, the KL or
the loss are not finite is rejected, the old parameters kept bit for bit; a run whose policy
still becomes non-finite ends ``diverged``.
"""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils import parameters_to_vector

import trpo_bench.methods.steps as steps
from trpo_bench.analysis.tables import problems, run_figures
from trpo_bench.core.value import ValueFunction
from trpo_bench.envs.registry import EnvVector
from trpo_bench.methods.registry import METHODS
from trpo_bench.methods.rwr import rwr_step
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator, train
from trpo_bench.sampling.single_path import sample_single_path


def _batch(method: str, env: str = "InvertedPendulum-v5", **settings):
    """A real first batch of ``method`` (seed 0), its policy and the config."""
    cfg = build_config(
        env, method, layers=[("t", {"steps_per_iter": 2000, "num_envs": 2, **settings})]
    )
    learner = build_learner(cfg)
    sample = sample_single_path(
        learner.envs, learner.policy, cfg, 0, learner.value_fn, iteration_generator(0, 0)
    )
    learner.envs.close()
    return cfg, learner.policy, sample.objective


def _theta(policy) -> torch.Tensor:
    return parameters_to_vector(policy.parameters()).detach().clone()


def _assert_rejected(stats, policy, before):
    assert not stats.step_accepted and stats.step_fraction == 0.0
    assert "non-finite" in stats.reject_reason
    assert torch.equal(_theta(policy), before)  # bit-identical, normaliser included
    assert stats.kl_mean == 0.0 and math.isfinite(stats.surrogate_after)


def test_natural_gradient_step_with_infinite_kl_is_rejected():
    # The issue's case: step_size 1000 takes a step whose KL is inf (then the policy is NaN).
    cfg, policy, objective = _batch("natural-gradient", step_size=1000.0)
    before = _theta(policy)
    stats = steps.natural_gradient_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    _assert_rejected(stats, policy, before)
    assert "KL" in stats.reject_reason


def test_rwr_fit_to_a_collapsed_policy_is_rejected():
    # The issue's case: temperature 0.01 puts all weight on a few actions; the fit's std
    # collapses and the KL is inf.
    cfg, policy, objective = _batch("rwr", rwr_temperature=0.01)
    before = _theta(policy)
    stats = rwr_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    _assert_rejected(stats, policy, before)


def test_vpg_step_that_overflows_is_rejected_with_its_adam_state():
    cfg, policy, objective = _batch("vpg", learning_rate=1e30)
    gen = torch.Generator().manual_seed(0)
    optimizer = steps.policy_adam(policy, cfg)
    before = _theta(policy)
    adam_before = copy.deepcopy(optimizer.state_dict())
    stats = steps.vpg_step(policy, objective, cfg, gen)
    _assert_rejected(stats, policy, before)
    adam_after = optimizer.state_dict()
    assert adam_after["state"].keys() == adam_before["state"].keys()
    for k, state in adam_before["state"].items():
        for name, value in state.items():
            assert torch.equal(adam_after["state"][k][name], value), name


@pytest.mark.parametrize(
    "method, env",
    [
        ("trpo-single-path", "CartPole-v1"),
        ("max-kl", "InvertedPendulum-v5"),
        ("empirical-fim", "CartPole-v1"),
        ("trpo-gae", "InvertedPendulum-v5"),
    ],
)
def test_trpo_steps_reject_a_line_search_that_leaves_nan(method, env, monkeypatch):
    # The line search tests the KL and the surrogate itself; the guard is the backstop for
    # a fault there: here a line search that "accepts" NaN parameters.
    def broken_line_search(params, full_step, evaluate, *_args):
        torch.nn.utils.vector_to_parameters(full_step * math.nan, params)
        surrogate, kl = evaluate()
        return SimpleNamespace(accepted=True, steps=1, fraction=1.0, surrogate=surrogate, kl=kl)

    monkeypatch.setattr(steps, "backtracking_line_search", broken_line_search)
    cfg, policy, objective = _batch(method, env)
    before = _theta(policy)
    stats = METHODS[method].step_rule(policy, objective, cfg, torch.Generator().manual_seed(0))
    _assert_rejected(stats, policy, before)
    assert "parameters" in stats.reject_reason


def test_value_fit_with_non_finite_loss_is_undone():
    torch.manual_seed(0)
    vf = ValueFunction(3, [8], 1e-3)
    obs, targets = torch.randn(64, 3), torch.randn(64)
    vf.fit(obs, targets, 1, 16, torch.Generator().manual_seed(0))  # Adam has moments now
    assert vf.reject_reason == ""
    before = copy.deepcopy((vf.state_dict(), vf.optimizer.state_dict()))
    targets[5] = math.nan
    loss = vf.fit(obs, targets, 2, 16, torch.Generator().manual_seed(0))
    for name, value in before[0].items():
        assert torch.equal(vf.state_dict()[name], value), name
    for k, state in before[1]["state"].items():
        for name, value in state.items():
            assert torch.equal(vf.optimizer.state_dict()["state"][k][name], value), name
    assert math.isnan(loss) and "non-finite" in vf.reject_reason


def _run(tmp_path, method, iterations=5, **settings):
    cfg = build_config(
        "InvertedPendulum-v5",
        method,
        layers=[
            (
                "t",
                {
                    "iterations": iterations,
                    "steps_per_iter": 2000,
                    "num_envs": 2,
                    "seed": 0,
                    "mlflow": False,
                    **settings,
                },
            )
        ],
    )
    summary = train(cfg, tmp_path / "run", log=lambda _m: None)
    rows = pd.read_csv(tmp_path / "run" / "progress.csv", keep_default_na=False)
    artifact = torch.load(tmp_path / "run" / "policy.pt", weights_only=False)
    finite = all(bool(torch.isfinite(t).all()) for t in artifact["state_dict"].values())
    return summary, rows, finite


@pytest.mark.parametrize(
    "method, settings",
    [("rwr", {"rwr_temperature": 0.01}), ("natural-gradient", {"step_size": 1000.0})],
)
def test_issue_cases_never_complete_with_a_nan_policy(tmp_path, method, settings):
    summary, rows, finite = _run(tmp_path, method, **settings)
    assert summary["status"] in ("completed", "diverged")
    if summary["status"] == "completed":
        assert finite
        accepted = rows[rows["step_accepted"] == 1]
        assert np.isfinite(accepted["kl_mean"].astype(float)).all()
        assert np.isfinite(rows["return_mean"].astype(float)).all()
    rejected = rows[rows["step_accepted"] == 0]
    assert len(rejected) and rejected["reject_reason"].str.contains("non-finite").all()


def test_a_policy_made_non_finite_by_its_normaliser_ends_diverged(tmp_path, monkeypatch):
    original = EnvVector.step
    calls = {"n": 0}

    def faulty(self, actions, n=None):
        result = original(self, actions, n)
        calls["n"] += 1
        if calls["n"] == 30:  # one NaN observation in the first batch
            result.next_obs[0, 0] = np.nan
        return result

    monkeypatch.setattr(EnvVector, "step", faulty)
    summary, rows, finite = _run(
        tmp_path, "trpo-single-path", iterations=4, normalize_observations=True
    )
    assert summary["status"] == "diverged" and not finite
    assert len(rows) == 1  # stopped before sampling with a NaN policy
    assert rows["reject_reason"][0] == "non-finite surrogate or gradient"
    assert '"status": "diverged"' in (tmp_path / "run" / "summary.json").read_text()
    # The tables do not average it and name it among the problems.
    figures = run_figures(summary)
    assert figures["status"] == "diverged"
    runs = pd.DataFrame([{"env": "e", "method": "m", "variant": "v", "seed": 0, **figures}])
    assert problems(runs)["status"].tolist() == ["diverged"]


def test_nan_reward_undoes_the_value_fit_and_the_run_recovers(tmp_path, monkeypatch):
    original = EnvVector.step
    calls = {"n": 0}

    def faulty(self, actions, n=None):
        result = original(self, actions, n)
        calls["n"] += 1
        if calls["n"] == 50:  # one NaN reward in the first batch: NaN value targets
            result.reward[0] = np.nan
        return result

    monkeypatch.setattr(EnvVector, "step", faulty)
    summary, rows, finite = _run(
        tmp_path, "trpo-gae", iterations=3, steps_per_iter=300, num_envs=1, vf_epochs=2
    )
    assert summary["status"] == "completed" and finite
    assert rows["step_accepted"].tolist() == [0, 1, 1]  # the value net was not left NaN
    assert rows["reject_reason"][0].startswith(
        "non-finite surrogate or gradient; value fit undone: non-finite"
    )
    assert np.isfinite(rows["value_loss"][1:].astype(float)).all()
