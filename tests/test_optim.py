"""The step's building blocks: Fisher-vector products, CG, step length, line search."""

import numpy as np
import pytest
import torch
from linalg_helpers import dense_kl_hessian
from torch.nn.utils import parameters_to_vector

from trpo_bench.core.optim import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    max_step_length,
)
from trpo_bench.core.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from trpo_bench.methods.steps import trpo_step
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator
from trpo_bench.sampling.single_path import sample_single_path


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_fisher_vector_product_equalsdense_kl_hessian(kind):
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        if kind == "gaussian":
            policy = GaussianMLPPolicy(3, 2, hidden_sizes=(5,), log_std_init=-0.3)
        else:
            policy = CategoricalMLPPolicy(3, 4, hidden_sizes=(5,))
        # Move away from the small-output init so every block of the Hessian is non-trivial.
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.5 * torch.randn_like(p))
        obs = torch.randn(7, 3)
        dense = dense_kl_hessian(policy, obs)
        params = policy.policy_parameters()
        with torch.no_grad():
            old = tuple(t.detach() for t in policy.dist_params(obs))
        fvp = fisher_vector_product(
            lambda: policy.kl(old, policy.dist_params(obs)).mean(), params, damping=0.0
        )
        for _ in range(3):
            v = torch.randn(dense.shape[0])
            np.testing.assert_allclose(fvp(v).numpy(), (dense @ v).numpy(), rtol=1e-8, atol=1e-10)
        # Damping adds lambda * v.
        fvp_d = fisher_vector_product(
            lambda: policy.kl(old, policy.dist_params(obs)).mean(), params, damping=0.1
        )
        v = torch.randn(dense.shape[0])
        np.testing.assert_allclose(
            fvp_d(v).numpy(), (dense @ v + 0.1 * v).numpy(), rtol=1e-8, atol=1e-10
        )
        # The Fisher is PSD and not zero: a wrong Hessian (e.g. missing the log-std block) fails.
        assert torch.linalg.eigvalsh(dense).min() > -1e-10
        assert dense.abs().sum() > 0
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("n", [2, 10, 50])
def test_conjugate_gradient_solves_spd_systems(n):
    g = torch.Generator().manual_seed(n)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=10 * n, residual_tol=1e-24)
    np.testing.assert_allclose((a @ x).numpy(), b.numpy(), atol=1e-8)
    np.testing.assert_allclose(x.numpy(), torch.linalg.solve(a, b).numpy(), atol=1e-6)


def test_conjugate_gradient_exact_in_n_steps_for_well_conditioned():
    # CG on a diagonal SPD matrix with 3 distinct eigenvalues converges in 3 iterations.
    a = torch.diag(torch.tensor([1.0, 2.0, 2.0, 5.0, 5.0], dtype=torch.float64))
    b = torch.ones(5, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=3, residual_tol=0.0)
    np.testing.assert_allclose(x.numpy(), [1, 0.5, 0.5, 0.2, 0.2], atol=1e-12)


def test_max_step_length_reaches_delta_under_quadratic_model():
    beta = max_step_length(shs=8.0, delta=0.01)
    # 0.5 * (beta s)' A (beta s) = 0.5 * beta^2 * s'As = delta
    assert 0.5 * beta**2 * 8.0 == pytest.approx(0.01)


@pytest.mark.parametrize("env", ["CartPole-v1", "InvertedPendulum-v5"])
def test_line_searched_step_satisfies_kl_and_improves_surrogate(env):
    cfg = build_config(
        env,
        "trpo-single-path",
        layers=[("test", {"steps_per_iter": 2000, "num_envs": 4, "hidden_sizes": [16]})],
    )
    learner = build_learner(cfg)
    gen = iteration_generator(0, 0)
    sample = sample_single_path(learner.envs, learner.policy, cfg, 0, None, gen)
    before = parameters_to_vector(learner.policy.parameters()).detach().clone()
    stats = trpo_step(learner.policy, sample.objective, cfg, gen)
    after = parameters_to_vector(learner.policy.parameters()).detach()
    assert stats.step_accepted
    assert not torch.equal(before, after)
    # The constraint holds on the batch (recomputed here, not read from the stats).
    with torch.no_grad():
        kl = sample.objective.kl(learner.policy).mean().item()
        surr_after = sample.objective.surrogate(learner.policy).item()
    assert kl <= cfg.delta * (1 + 1e-4)
    assert kl > 0.1 * cfg.delta  # a real step, not a vanishing one
    assert surr_after > stats.surrogate_before
    assert stats.kl_mean == pytest.approx(kl, rel=1e-5)


def test_line_search_restores_parameters_when_no_trial_passes():
    policy = GaussianMLPPolicy(3, 1, hidden_sizes=(4,))
    params = policy.policy_parameters()
    before = parameters_to_vector(params).detach().clone()
    calls = []

    def never_improves():
        calls.append(parameters_to_vector(params).detach().clone())
        return -1.0, 0.0  # surrogate below the old value at every trial

    result = backtracking_line_search(
        params,
        torch.ones_like(before),
        never_improves,
        surrogate_before=0.0,
        kl_limit=0.01,
        max_backtracks=4,
    )
    assert not result.accepted and result.fraction == 0.0
    assert torch.equal(parameters_to_vector(params).detach(), before)
    # The trials were theta + 0.5^k * step, k = 0..3, then the restore.
    for k in range(4):
        torch.testing.assert_close(calls[k], before + 0.5**k)


def test_line_search_takes_first_trial_inside_the_trust_region():
    policy = GaussianMLPPolicy(3, 1, hidden_sizes=(4,))
    params = policy.policy_parameters()
    before = parameters_to_vector(params).detach().clone()

    def quadratic_kl():
        d = parameters_to_vector(params).detach() - before
        return float(d.sum()), float(0.5 * d.dot(d))  # surrogate grows, KL = |d|^2 / 2

    step = torch.ones_like(before)  # KL of the full step = n/2, far above the limit
    result = backtracking_line_search(params, step, quadratic_kl, 0.0, kl_limit=0.01)
    n = before.numel()
    k = next(k for k in range(10) if 0.5 * (0.5**k) ** 2 * n <= 0.01)
    assert result.accepted and result.steps == k + 1 and result.fraction == 0.5**k
    assert result.kl <= 0.01


def test_zero_gradient_is_rejected_and_keeps_parameters():
    cfg = build_config(
        "CartPole-v1",
        "trpo-single-path",
        layers=[("test", {"steps_per_iter": 1000, "num_envs": 2})],
    )
    learner = build_learner(cfg)
    gen = iteration_generator(0, 0)
    sample = sample_single_path(learner.envs, learner.policy, cfg, 0, None, gen)
    sample.objective.advantages = torch.zeros_like(sample.objective.advantages)
    before = parameters_to_vector(learner.policy.parameters()).detach().clone()
    stats = trpo_step(learner.policy, sample.objective, cfg, gen)
    assert not stats.step_accepted and stats.reject_reason == "zero gradient"
    assert torch.equal(parameters_to_vector(learner.policy.parameters()).detach(), before)
