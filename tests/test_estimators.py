"""Returns, advantages and surrogates on hand-made numbers."""

import numpy as np
import pytest
import torch

from trpo_bench.core.estimators import (
    discounted_returns,
    enumerated_surrogate,
    gae_advantages,
    importance_sampled_surrogate,
    self_normalized_surrogate,
)

G = 0.9


def _path():
    # One env (N = 1), 6 steps: an episode that terminates after step 2, then one that is
    # truncated (time limit) after step 5.
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[:, None]
    term = np.array([0, 0, 1, 0, 0, 0], dtype=bool)[:, None]
    trunc = np.array([0, 0, 0, 0, 0, 1], dtype=bool)[:, None]
    return r, term, trunc


def test_return_to_go_with_termination_and_truncation():
    r, term, trunc = _path()
    q = discounted_returns(r, term, trunc, G)[:, 0]
    expected = [
        1 + G * 2 + G**2 * 3,
        2 + G * 3,
        3,  # terminated: nothing after
        4 + G * 5 + G**2 * 6,
        5 + G * 6,
        6,  # truncated without a value function: summed to the cut
    ]
    np.testing.assert_allclose(q, expected)


def test_return_to_go_bootstraps_only_truncation():
    r, term, trunc = _path()
    boot = np.zeros_like(r)
    boot[2, 0] = 100.0  # ignored: the episode terminated there
    boot[5, 0] = 10.0  # used: the path was cut there
    q = discounted_returns(r, term, trunc, G, bootstrap=boot)[:, 0]
    np.testing.assert_allclose(q[:3], [1 + G * 2 + G**2 * 3, 2 + G * 3, 3])
    np.testing.assert_allclose(
        q[3:], [4 + G * 5 + G**2 * (6 + G * 10), 5 + G * (6 + G * 10), 6 + G * 10]
    )


def test_return_to_go_is_per_env_column():
    r = np.array([[1.0, 10.0], [1.0, 10.0]])
    term = np.array([[False, True], [False, False]])
    trunc = np.zeros_like(term)
    q = discounted_returns(r, term, trunc, 0.5)
    np.testing.assert_allclose(q, [[1.5, 10.0], [1.0, 10.0]])


def _values():
    r, term, trunc = _path()
    v = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])[:, None]
    nxt = np.zeros_like(v)
    nxt[:-1] = v[1:]
    nxt[2, 0] = 99.0  # the state after a termination: must not be used
    nxt[5, 0] = 7.0  # V of the state the truncated path was cut in
    return r, term, trunc, v, nxt


def test_gae_lambda_one_is_bootstrapped_return_minus_value():
    r, term, trunc, v, nxt = _values()
    adv = gae_advantages(r, v, nxt, term, trunc, G, lam=1.0)
    boot = np.zeros_like(r)
    boot[5, 0] = 7.0
    q = discounted_returns(r, term, trunc, G, bootstrap=boot)
    np.testing.assert_allclose(adv, q - v)


def test_gae_lambda_zero_is_one_step_td_error():
    r, term, trunc, v, nxt = _values()
    adv = gae_advantages(r, v, nxt, term, trunc, G, lam=0.0)[:, 0]
    expected = [
        1 + G * 1.0 - 0.5,
        2 + G * 1.5 - 1.0,
        3 - 1.5,  # termination: no bootstrap from the (ignored) 99
        4 + G * 2.5 - 2.0,
        5 + G * 3.0 - 2.5,
        6 + G * 7.0 - 3.0,  # truncation: bootstrap from V of the cut state
    ]
    np.testing.assert_allclose(adv, expected)


def test_gae_intermediate_lambda_hand_computed():
    r = np.array([[1.0], [0.0]])
    v = np.array([[0.2], [0.4]])
    nxt = np.array([[0.4], [0.8]])
    term = np.zeros((2, 1), dtype=bool)
    trunc = np.array([[False], [True]])
    lam = 0.5
    d1 = 0.0 + G * 0.8 - 0.4
    d0 = 1.0 + G * 0.4 - 0.2
    adv = gae_advantages(r, v, nxt, term, trunc, G, lam)[:, 0]
    np.testing.assert_allclose(adv, [d0 + G * lam * d1, d1])


def test_importance_sampled_surrogate_eq14():
    logp_new = torch.log(torch.tensor([0.5, 0.2]))
    logp_q = torch.log(torch.tensor([0.25, 0.4]))
    q = torch.tensor([3.0, -1.0])
    # mean(2 * 3, 0.5 * -1) = 2.75
    assert importance_sampled_surrogate(logp_new, logp_q, q).item() == pytest.approx(2.75)


def test_enumerated_surrogate_eq15():
    probs = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    q = torch.tensor([[1.0, 2.0], [4.0, 0.0]])
    # state 1: 0.2 + 1.6 = 1.8; state 2: 2.0; mean 1.9
    assert enumerated_surrogate(probs, q).item() == pytest.approx(1.9)


def test_self_normalized_surrogate_eq16():
    # One state, K = 3: w = pi/pi_old = (2, 1, 0.5), Q = (1, 4, -2)
    logp_old = torch.log(torch.tensor([[0.1, 0.2, 0.4]]))
    logp_new = torch.log(torch.tensor([[0.2, 0.2, 0.2]]))
    q = torch.tensor([[1.0, 4.0, -2.0]])
    expected = (2 * 1 + 1 * 4 + 0.5 * -2) / (2 + 1 + 0.5)
    assert self_normalized_surrogate(logp_new, logp_old, q).item() == pytest.approx(expected)
    # Adding a constant to Q adds it to L_n (the self-normalised estimator needs no baseline).
    shifted = self_normalized_surrogate(logp_new, logp_old, q + 10.0).item()
    assert shifted == pytest.approx(expected + 10.0)
