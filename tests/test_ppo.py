"""PPO (trpo_bench.methods.ppo): the clipped surrogate with numbers, an update that improves a task,
its declared config keys, and that it needs per-sample data."""

import math

import pytest
import torch

from trpo_bench.api import Objective
from trpo_bench.config import ConfigError
from trpo_bench.core.policies import GaussianMLPPolicy
from trpo_bench.methods.ppo import ADAM_EPS, clipped_surrogate, minibatch_advantages, ppo_step
from trpo_bench.resolve import build_config
from trpo_bench.sampling.single_path import SinglePathObjective


def test_clipped_surrogate_on_hand_made_ratios():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5, 0.5, 1.1], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, 2.0])
    value = clipped_surrogate(ratio, adv, 0.2)
    # min(rA, clip(r, 0.8, 1.2) A): a worse ratio is kept, a better one is capped.
    assert value.tolist() == pytest.approx([0.5, 1.0, 1.2, -1.5, -0.8, 2.2])
    value.sum().backward()
    # No gradient where the clip is active (r=1.5 with A>0, r=0.5 with A<0): PPO's incentive
    # to move the ratio further stops there; elsewhere d/dr = A.
    assert ratio.grad.tolist() == pytest.approx([1.0, 1.0, 0.0, -1.0, 0.0, 2.0])


def test_minibatch_advantages_are_standardised_over_the_minibatch():
    adv = torch.tensor([1.0, 2.0, 3.0, 6.0])
    out = minibatch_advantages(adv, normalize=True)
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-7)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-6)  # torch's (n-1) std, as SB3
    assert out.tolist() == pytest.approx(((adv - 3.0) / (adv.std() + 1e-8)).tolist())
    assert minibatch_advantages(adv, normalize=False) is adv
    one = torch.tensor([5.0])
    assert minibatch_advantages(one, normalize=True) is one  # no std of one sample


def _bandit(n=512, seed=0):
    """A one-step task: reward -(a - 0.5)^2 for a 1-D action; advantages = reward - mean."""
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(8,), log_std_init=-0.5)
    obs = torch.randn(n, 2)
    with torch.no_grad():
        actions = policy.sample(policy.dist_params(obs))
    reward = -((actions[:, 0] - 0.5) ** 2)
    return policy, SinglePathObjective(policy, obs, actions, reward - reward.mean()), obs


def _expected_reward(policy, obs):
    """E[-(a - 0.5)^2] = -((mu - 0.5)^2 + sigma^2), averaged over the states."""
    with torch.no_grad():
        mean, log_std = policy.dist_params(obs)
        return float((-((mean[:, 0] - 0.5) ** 2) - torch.exp(2 * log_std[0])).mean())


def test_a_ppo_update_improves_a_bandit_and_stays_near_pi_old():
    policy, objective, obs = _bandit()
    cfg = build_config(
        "InvertedPendulum-v5", "ppo", layers=[("t", {"learning_rate": 1e-2, "mlflow": False})]
    )
    before = _expected_reward(policy, obs)
    stats = ppo_step(policy, objective, cfg, torch.Generator().manual_seed(1))
    after = _expected_reward(policy, obs)
    assert stats.step_accepted and stats.reject_reason == ""
    # Initially mu ~ 0, sigma = e^-0.5: E[r] = -(0.25 + 0.37) = -0.62; the update moves both.
    assert before == pytest.approx(-0.618, abs=0.01)
    assert after > before + 0.05
    assert stats.surrogate_after > stats.surrogate_before
    # 10 epochs of 8 minibatches, 80 Adam steps; the clip keeps the new policy near pi_old.
    assert 0.0 < stats.kl_mean < 0.2
    assert 0.0 <= stats.extra["ppo_clip_fraction"] <= 1.0
    assert math.isfinite(stats.extra["ppo_loss"])
    assert policy.optimizer.param_groups[0]["eps"] == ADAM_EPS
    assert policy.optimizer.param_groups[0]["lr"] == 1e-2


def test_a_smaller_clip_range_takes_a_smaller_step():
    kls = {}
    for clip in (0.02, 0.3):
        policy, objective, _ = _bandit()
        layers = [("t", {"learning_rate": 1e-2, "clip_range": clip, "mlflow": False})]
        cfg = build_config("InvertedPendulum-v5", "ppo", layers=layers)
        kls[clip] = ppo_step(policy, objective, cfg, torch.Generator().manual_seed(1)).kl_mean
    assert kls[0.02] < kls[0.3] / 3


def test_ppo_declares_its_keys_with_sb3_defaults():
    cfg = build_config("Hopper-v5", "ppo")
    assert (cfg.clip_range, cfg.ppo_epochs, cfg.ppo_minibatch, cfg.max_grad_norm) == (
        0.2,
        10,
        64,
        0.5,
    )
    assert (cfg.steps_per_iter, cfg.num_envs, cfg.learning_rate) == (2048, 1, 3e-4)
    assert (cfg.gamma, cfg.gae_lambda, cfg.baseline) == (0.99, 0.95, "value")
    assert (cfg.vf_learning_rate, cfg.vf_epochs, cfg.vf_minibatch) == (3e-4, 10, 64)
    assert cfg.hidden_sizes == [64, 64] and cfg.vf_hidden_sizes == [64, 64]
    assert cfg.to_dict()["clip_range"] == 0.2 and "method_options" not in cfg.to_dict()
    with pytest.raises(AttributeError, match="no config key 'clip_rnge'"):
        _ = cfg.clip_rnge
    with pytest.raises(ConfigError, match=r"'clip_range': 1.5 is out of range \(allowed: < 1.0\)"):
        build_config("Hopper-v5", "ppo", layers=[("t", {"clip_range": 1.5})])
    with pytest.raises(ConfigError, match=r"'ppo_epochs': 2.5 is not an integer"):
        build_config("Hopper-v5", "ppo", layers=[("t", {"ppo_epochs": 2.5})])
    with pytest.raises(ConfigError, match="'clip_range' in t belongs to method ppo, not"):
        build_config("Hopper-v5", "trpo-gae", layers=[("t", {"clip_range": 0.1})])


class _StatesOnly(Objective):
    """An objective without one action per state (as vine's)."""

    def __init__(self) -> None:
        self.kl_obs = torch.zeros(3, 2)


def test_ppo_needs_one_sampled_action_per_state():
    policy, _, _ = _bandit()
    cfg = build_config("InvertedPendulum-v5", "ppo")
    with pytest.raises(TypeError, match="ppo_step needs one sampled action per state"):
        ppo_step(policy, _StatesOnly(), cfg, torch.Generator())
