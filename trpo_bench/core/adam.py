"""Fused Adam steps without ``Optimizer.step``'s per-call bookkeeping (issue 16).

PPO takes 640 Adam steps per 2,048-step iteration on [64, 64] networks (its policy's and its
value net's, minibatches of 64): there ``optimizer.step()`` of a fused ``torch.optim.Adam``
costs about 50 us on the CPU, two thirds of it hooks, profiling, gathering the state and
grouping the tensors by device, around one call of the fused kernel. :class:`FusedAdamSteps`
gathers the state once and calls the kernel as ``torch.optim.adam._fused_adam`` does: the same
numbers (``tests/test_ppo_fast_paths.py`` checks them bit for bit against ``optimizer.step()``).

The kernel, ``torch._fused_adam_``, is torch's own but not public API: where a torch version
lacks it or calls it differently, the first step finds out, puts the step count back and
``optimizer.step()`` takes every step from then on (slower, the same numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import optimizer as optim_module


class FusedAdamSteps:
    """Steps of ``optimizer``, a ``torch.optim.Adam(fused=True)`` whose every parameter has a
    gradient at each step. Settings the direct call does not cover (several parameter groups
    or devices, amsgrad, weight decay, maximize, a tensor learning rate, step hooks, a
    parameter without a gradient) take ``optimizer.step()`` itself."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params: list[Tensor] = []
        self.state: tuple[list[Tensor], list[Tensor], list[Tensor]] | None = None
        groups = optimizer.param_groups
        if not isinstance(optimizer, torch.optim.Adam) or len(groups) != 1:
            return
        g = groups[0]
        plain = (
            g["fused"]
            and not (g["amsgrad"] or g["maximize"] or g["capturable"] or g["differentiable"])
            and not g.get("decoupled_weight_decay", False)
            and g["weight_decay"] == 0
            and isinstance(g["lr"], float)
            and len({(p.device, p.dtype) for p in g["params"]}) == 1
            and not getattr(optimizer, "_optimizer_step_pre_hooks", None)
            and not getattr(optimizer, "_optimizer_step_post_hooks", None)
            and getattr(optimizer, "grad_scale", None) is None
            and getattr(optimizer, "found_inf", None) is None
        )
        if plain and hasattr(torch, "_fused_adam_"):
            self.params = list(g["params"])

    def step(self) -> None:
        """One Adam step on the parameters' ``.grad``, as ``optimizer.step()``."""
        if not self.params:
            self.optimizer.step()
            return
        grads = [p.grad for p in self.params]
        if any(gr is None for gr in grads) or self._global_hooks():
            self.optimizer.step()
            return
        if self.state is None:
            states = [self.optimizer.state.get(p) for p in self.params]
            if any(not s for s in states):  # the first step ever creates the state
                self.optimizer.step()
                return
            self.state = tuple([s[k] for s in states] for k in ("exp_avg", "exp_avg_sq", "step"))
        exp_avgs, exp_avg_sqs, steps = self.state
        g = self.optimizer.param_groups[0]
        with torch.no_grad():
            torch._foreach_add_(steps, 1)
            try:
                self._kernel(grads, exp_avgs, exp_avg_sqs, steps, g)
            except (TypeError, RuntimeError):  # another torch's kernel: optimizer.step() from now
                torch._foreach_sub_(steps, 1)
                self.params = []
                self.optimizer.step()

    def _kernel(
        self,
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        steps: list[Tensor],
        g: dict,
    ) -> None:
        beta1, beta2 = g["betas"]
        torch._fused_adam_(
            self.params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            amsgrad=False,
            lr=g["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=g["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    @staticmethod
    def _global_hooks() -> bool:
        return bool(
            getattr(optim_module, "_global_optimizer_pre_hooks", None)
            or getattr(optim_module, "_global_optimizer_post_hooks", None)
        )
