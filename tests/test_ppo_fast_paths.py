"""The batched forms behind PPO's speed (issue 16) give the numbers of the plain forms."""

import copy
import math

import torch

from trpo_bench.core.adam import FusedAdamSteps
from trpo_bench.core.value import ValueFunction
from trpo_bench.methods.ppo import clip_grad_norm, epoch_advantages, minibatch_advantages


def _per_minibatch(adv: torch.Tensor, size: int) -> torch.Tensor:
    parts = [minibatch_advantages(adv[i : i + size], True) for i in range(0, len(adv), size)]
    return torch.cat(parts)


def test_epoch_advantages_are_the_per_minibatch_standardisation_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for n, size in [(2048, 64), (300, 64), (129, 64), (50, 64), (10, 1), (7, 2)]:
        adv = torch.randn(n, generator=g) * 3.0 + 1.5
        got = epoch_advantages(adv, size, normalize=True)
        assert torch.equal(got, _per_minibatch(adv, size)), (n, size)
    # n = 129, size 64: the last minibatch holds one sample, left as it is (no std of one).
    adv = torch.randn(129, generator=g)
    assert epoch_advantages(adv, 64, True)[-1] == adv[-1]
    assert abs(float(epoch_advantages(adv, 64, True)[:64].std()) - 1.0) < 1e-6
    assert epoch_advantages(adv, 64, normalize=False) is adv


def test_clip_grad_norm_matches_torch_in_norm_and_scaled_gradients():
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(64, 11, generator=g), torch.randn(64, generator=g), torch.randn(3)]
    for max_norm in (0.5, math.inf):
        mine, theirs = copy.deepcopy(grads), copy.deepcopy(grads)
        params = [torch.zeros_like(t, requires_grad=True) for t in theirs]
        for p, t in zip(params, theirs, strict=True):
            p.grad = t
        norm = clip_grad_norm(mine, max_norm)
        assert torch.equal(norm, torch.nn.utils.clip_grad_norm_(params, max_norm))
        for a, p in zip(mine, params, strict=True):
            assert torch.equal(a, p.grad)
    total = math.sqrt(sum(float(t.pow(2).sum()) for t in grads))
    clipped = copy.deepcopy(grads)
    clip_grad_norm(clipped, 0.5)
    after = math.sqrt(sum(float(t.pow(2).sum()) for t in clipped))
    assert total > 10.0 and abs(after - 0.5) < 1e-5


def _reference_fit(vf: ValueFunction, obs, targets, epochs, minibatch, generator) -> None:
    """The fit as it was: normalise and gather each minibatch, a module call per layer."""
    n = obs.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, minibatch):
            idx = perm[start : start + minibatch]
            loss = (vf(obs[idx]) - targets[idx]).pow(2).mean()
            vf.optimizer.zero_grad()
            loss.backward()
            vf.optimizer.step()


def _value_fn(fused: bool = False) -> ValueFunction:
    torch.manual_seed(3)
    vf = ValueFunction(11, [64, 64], 1e-3, normalize_observations=True, fused_adam=fused)
    vf.obs_norm.update(torch.randn(500, 11) * 4.0 + 2.0)
    return vf


def test_value_fit_gives_the_per_minibatch_numbers_bit_for_bit():
    g = torch.Generator().manual_seed(2)
    obs, targets = torch.randn(300, 11, generator=g) * 4.0, torch.randn(300, generator=g) * 10
    fast, slow = _value_fn(), _value_fn()
    loss = fast.fit(obs, targets, 3, 64, torch.Generator().manual_seed(5))
    _reference_fit(slow, obs, targets, 3, 64, torch.Generator().manual_seed(5))
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert loss == float((slow(obs) - targets).pow(2).mean())
    assert loss < float(targets.pow(2).mean())  # it did fit


def test_fused_value_adam_is_the_same_update_up_to_rounding():
    g = torch.Generator().manual_seed(4)
    obs, targets = torch.randn(256, 11, generator=g), torch.randn(256, generator=g)
    plain, fused = _value_fn(), _value_fn(fused=True)
    assert fused.optimizer.defaults["fused"] and not plain.optimizer.defaults["fused"]
    before = [p.detach().clone() for p in plain.parameters()]
    plain.fit(obs, targets, 2, 64, torch.Generator().manual_seed(6))
    fused.fit(obs, targets, 2, 64, torch.Generator().manual_seed(6))
    for a, b, b0 in zip(fused.parameters(), plain.parameters(), before, strict=True):
        assert (a - b).abs().max() < 1e-6
        assert (b - b0).abs().max() > 1e-4  # the weights did move


def _adam_run(direct: bool, fused: bool = True) -> list[torch.Tensor]:
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, eps=1e-5, fused=fused)
    steps = FusedAdamSteps(opt)
    assert bool(steps.params) == fused  # the direct call only for the fused kernel
    g = torch.Generator().manual_seed(8)
    for _ in range(30):
        x = torch.randn(32, 5, generator=g)
        loss = (net(x).squeeze(-1) - x.sum(-1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        steps.step() if direct else opt.step()
    assert int(opt.state[next(net.parameters())]["step"]) == 30
    return [p.detach().clone() for p in net.parameters()]


def test_direct_fused_adam_steps_are_optimizer_step_bit_for_bit():
    start = _adam_run(direct=False)  # the same seed: the reference weights after 30 steps
    for a, b in zip(_adam_run(direct=True), start, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(_adam_run(direct=True, fused=False), _adam_run(False, False), strict=True):
        assert torch.equal(a, b)  # not fused: optimizer.step() itself


def test_a_torch_whose_kernel_takes_other_arguments_falls_back_to_optimizer_step(monkeypatch):
    calls = []

    def other_signature(*args, **kwargs):  # our call of torch's kernel, refused
        calls.append(1)
        raise TypeError("_fused_adam_() got an unexpected keyword argument")

    reference = _adam_run(direct=False)
    monkeypatch.setattr(FusedAdamSteps, "_kernel", other_signature)
    for a, b in zip(_adam_run(direct=True), reference, strict=True):
        assert torch.equal(a, b)  # the step count put back, every later step optimizer.step()
    assert calls == [1]  # tried once, then never again
