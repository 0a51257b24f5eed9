"""The step-rule variants (issue 4): each checked against its definition."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from linalg_helpers import dense_empirical_fisher, dense_kl_hessian
from torch.nn.utils import parameters_to_vector

from trpo_bench.core.optim import empirical_fisher_vector_product, flat_grad
from trpo_bench.core.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from trpo_bench.methods.registry import METHODS
from trpo_bench.methods.steps import max_kl_step, natural_gradient_step, trpo_step
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator, train
from trpo_bench.sampling.single_path import SinglePathObjective, sample_single_path


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _tiny_problem(kind="gaussian", n=9, seed=0):
    torch.manual_seed(seed)
    if kind == "gaussian":
        policy = GaussianMLPPolicy(3, 2, hidden_sizes=(4,), log_std_init=-0.2)
    else:
        policy = CategoricalMLPPolicy(3, 3, hidden_sizes=(4,))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.4 * torch.randn_like(p))
    obs = torch.randn(n, 3)
    with torch.no_grad():
        actions = policy.sample(policy.dist_params(obs))
    advantages = torch.randn(n)
    return policy, SinglePathObjective(policy, obs, actions, advantages)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_natural_gradient_step_is_eps_times_dense_solve(kind, float64):
    policy, objective = _tiny_problem(kind)
    cfg = build_config(
        "CartPole-v1",
        "natural-gradient",
        layers=[
            (
                "t",
                {
                    "step_size": 0.3,
                    "cg_iters": 200,
                    "cg_damping": 0.05,
                    "fvp_subsample": 1.0,
                    "cg_residual_tol": 1e-30,  # run CG to convergence: an exact solve
                },
            )
        ],
    )
    params = policy.policy_parameters()
    theta0 = parameters_to_vector(params).detach().clone()
    g = flat_grad(objective.surrogate(policy), params)
    a = dense_kl_hessian(policy, objective.kl_obs) + 0.05 * torch.eye(theta0.numel())
    expected = 0.3 * torch.linalg.solve(a, g)
    stats = natural_gradient_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    taken = parameters_to_vector(params).detach() - theta0
    np.testing.assert_allclose(taken.numpy(), expected.numpy(), rtol=1e-6, atol=1e-9)
    assert stats.step_accepted and stats.linesearch_steps == 0
    # The KL actually taken is recorded, not enforced.
    with torch.no_grad():
        assert stats.kl_mean == pytest.approx(objective.kl(policy).mean().item())


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_empirical_fisher_product_equals_dense_outer_product(kind, float64):
    policy, objective = _tiny_problem(kind, n=11)
    dense = dense_empirical_fisher(policy, objective.kl_obs, objective.actions)
    fvp = empirical_fisher_vector_product(
        policy, policy.log_prob, objective.kl_obs, objective.actions, damping=0.0
    )
    for _ in range(3):
        v = torch.randn(dense.shape[0])
        np.testing.assert_allclose(fvp(v).numpy(), (dense @ v).numpy(), rtol=1e-8, atol=1e-12)
    fvp_d = empirical_fisher_vector_product(
        policy, policy.log_prob, objective.kl_obs, objective.actions, damping=0.2
    )
    v = torch.randn(dense.shape[0])
    np.testing.assert_allclose(fvp_d(v).numpy(), (dense @ v + 0.2 * v).numpy(), rtol=1e-8)
    # Not the analytic Fisher: the two estimators differ on a finite batch.
    analytic = dense_kl_hessian(policy, objective.kl_obs)
    assert not torch.allclose(analytic, dense, atol=1e-3)


def _pendulum_batch(seed=0):
    cfg = build_config(
        "InvertedPendulum-v5",
        "trpo-single-path",
        layers=[("t", {"steps_per_iter": 3000, "num_envs": 3, "hidden_sizes": [16], "seed": seed})],
    )
    learner = build_learner(cfg)
    sample = sample_single_path(
        learner.envs, learner.policy, cfg, 0, None, iteration_generator(seed, 0)
    )
    return cfg, learner.policy, sample.objective


def test_max_kl_step_bounds_max_kl_where_mean_kl_step_does_not():
    cfg, policy, objective = _pendulum_batch()
    theta0 = parameters_to_vector(policy.parameters()).detach().clone()
    # The paper's TRPO (mean KL <= delta) moves some states far more than delta ...
    mean_stats = trpo_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    assert mean_stats.step_accepted
    with torch.no_grad():
        kl = objective.kl(policy)
    assert kl.mean() <= cfg.delta * (1 + 1e-4) and kl.max() > cfg.delta
    # ... while max-KL (eq. 11) keeps every state of the batch inside the trust region.
    torch.nn.utils.vector_to_parameters(theta0, policy.parameters())
    stats = max_kl_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    assert stats.step_accepted
    with torch.no_grad():
        kl = objective.kl(policy)
    assert kl.max() <= cfg.delta * (1 + 1e-4)
    assert stats.kl_max == pytest.approx(kl.max().item(), rel=1e-5)
    assert stats.surrogate_after > stats.surrogate_before


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_kl_step_is_sized_for_the_max_kl_not_the_mean(seed):
    # The mean-KL step beta s puts the max KL over the batch 10-30x above delta; halving from
    # there left max KL anywhere in [delta / 4, delta] (a quarter of the trust region used, at
    # worst). Sized from the max state's quadratic model, the first trial is accepted and uses
    # nearly all of it.
    cfg, policy, objective = _pendulum_batch(seed)
    stats = max_kl_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    assert stats.step_accepted and stats.linesearch_steps == 1
    assert 0.9 * cfg.delta <= stats.kl_max <= cfg.delta
    assert stats.surrogate_after > stats.surrogate_before


def test_max_kl_sizing_leaves_the_mean_kl_step_alone():
    cfg, policy, objective = _pendulum_batch(seed=3)
    stats = trpo_step(policy, objective, cfg, torch.Generator().manual_seed(0))
    assert "max_kl_step_scale" not in stats.extra
    assert stats.step_accepted and stats.kl_mean <= cfg.delta * (1 + 1e-4)


def test_empirical_fim_step_respects_the_trust_region():
    cfg, policy, objective = _pendulum_batch(seed=1)
    stats = METHODS["empirical-fim"].step_rule(
        policy, objective, cfg, torch.Generator().manual_seed(0)
    )
    assert stats.step_accepted
    with torch.no_grad():
        assert objective.kl(policy).mean() <= cfg.delta * (1 + 1e-4)
    assert stats.surrogate_after > stats.surrogate_before


def test_vpg_keeps_adam_state_across_iterations_and_in_checkpoints(tmp_path):
    cfg = build_config(
        "CartPole-v1",
        "vpg",
        layers=[
            (
                "t",
                {
                    "iterations": 2,
                    "steps_per_iter": 400,
                    "num_envs": 2,
                    "mlflow": False,
                    "checkpoint_every": 1,
                },
            )
        ],
    )
    train(cfg, tmp_path / "run", log=lambda _m: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    adam = state["policy_optimizer"]["state"]
    assert adam and all(int(s["step"]) == 2 for s in adam.values())


def test_modern_preset_resolves_to_reference_defaults():
    cfg = build_config("Hopper-v5", "trpo-gae")
    assert (cfg.baseline, cfg.gae_lambda, cfg.steps_per_iter, cfg.cg_iters) == (
        "value",
        0.95,
        2048,
        15,
    )
    assert (cfg.cg_damping, cfg.delta, cfg.vf_learning_rate, cfg.vf_epochs, cfg.vf_minibatch) == (
        0.1,
        0.01,
        1e-3,
        10,
        128,
    )


GRADIENT_METHODS = [
    "trpo-single-path",
    "natural-gradient",
    "max-kl",
    "empirical-fim",
    "trpo-gae",
    "vpg",
]


@pytest.mark.slow
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_every_method_improves_inverted_pendulum(method, tmp_path):
    cfg = build_config(
        "InvertedPendulum-v5",
        method,
        layers=[
            (
                "t",
                {
                    "iterations": 15,
                    "steps_per_iter": 4000,
                    "num_envs": 4,
                    "mlflow": False,
                    "seed": 0,
                },
            )
        ],
    )
    train(cfg, tmp_path / method, log=lambda _m: None)
    returns = pd.read_csv(tmp_path / method / "progress.csv")["return_mean"]
    first, last = returns.iloc[0], returns.iloc[-3:].mean()
    assert last > 1.5 * first, (method, first, last)


def test_registry_lists_every_method_with_a_summary():
    for name in GRADIENT_METHODS:
        assert name in METHODS and METHODS[name].summary
    cfg = build_config("CartPole-v1", "max-kl")
    assert replace(cfg, method="x").method == "x"  # configs are plain dataclasses
