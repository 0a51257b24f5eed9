"""The pieces of the step (sec. 6 and appendix C), each small and separately tested.

* :func:`fisher_vector_product`: ``v -> (A + lambda I) v`` with ``A`` the Hessian of the mean KL
  (the analytic Fisher), by double backprop, never a dense matrix;
* :func:`empirical_fisher_vector_product`: the same with the empirical Fisher, the mean outer
  product of per-sample score gradients (the alternative the paper compares against);
* :func:`conjugate_gradient`: ``k`` iterations of CG for ``A x = g``;
* :func:`max_step_length`: ``beta = sqrt(2 delta / s'As)``, the step that reaches the KL bound
  under the quadratic model;
* :func:`backtracking_line_search`: shrink the step exponentially until the surrogate improves
  and the constraint holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils import parameters_to_vector, vector_to_parameters

MatVec = Callable[[Tensor], Tensor]


def flat_grad(
    output: Tensor,
    params: Sequence[nn.Parameter],
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """The gradient of a scalar with respect to ``params`` as one flat vector."""
    grads = torch.autograd.grad(
        output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def fisher_vector_product(
    kl_mean: Callable[[], Tensor], params: Sequence[nn.Parameter], damping: float = 0.0
) -> MatVec:
    """Return ``v -> (H + damping I) v``, ``H`` the Hessian of ``kl_mean()`` at the current params.

    ``kl_mean()`` must build ``mean_n KL(pi_old(.|s_n) || pi_theta(.|s_n))`` with pi_old detached,
    so that its Hessian at theta = theta_old is the Fisher information matrix (sec. 6). The
    first backward pass (with ``create_graph``) is done once; each product costs one more
    backward through it.
    """
    grad_kl = flat_grad(kl_mean(), params, create_graph=True)

    def product(v: Tensor) -> Tensor:
        hv = flat_grad((grad_kl * v.detach()).sum(), params, retain_graph=True)
        return hv + damping * v

    return product


def empirical_fisher_vector_product(
    module: nn.Module,
    log_prob: Callable[[Any, Tensor, Tensor], Tensor],
    obs: Tensor,
    actions: Tensor,
    damping: float = 0.0,
) -> MatVec:
    """Return ``v -> (1/N) sum_n g_n (g_n' v) + damping v``: the empirical Fisher (sec. 6).

    ``g_n`` is the score ``grad log pi_theta(a_n|s_n)`` of sample n. The N per-sample gradients
    are computed once, by ``torch.func.vmap`` over ``torch.func.grad``, into an ``[N, P]`` matrix
    G; each product is then two matrix-vector products, ``G' (G v) / N``. ``log_prob(dist, a)``
    is the policy's log-density of actions given ``module(obs)``'s output.
    """
    params = {k: p.detach() for k, p in module.named_parameters() if p.requires_grad}

    def logp_one(p: dict[str, Tensor], o: Tensor, a: Tensor) -> Tensor:
        dist = functional_call(module, p, (o.unsqueeze(0),))
        return log_prob(dist, a.unsqueeze(0)).squeeze(0)

    grads = vmap(grad(logp_one), in_dims=(None, 0, 0))(params, obs, actions)
    n = obs.shape[0]
    scores = torch.cat([grads[k].reshape(n, -1) for k in params], dim=1)

    def product(v: Tensor) -> Tensor:
        return scores.T @ (scores @ v) / n + damping * v

    return product


def conjugate_gradient(
    matvec: MatVec,
    b: Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``matvec``.

    Standard CG (Hestenes & Stiefel) from ``x0 = 0``, stopped after ``iters`` iterations or when
    ``r'r < residual_tol``. A direction with ``p'Ap <= 0`` (A not positive-definite, or numerical
    trouble) stops the iteration; the caller checks ``s'As`` of the result.
    """
    return conjugate_gradient_with_residual(matvec, b, iters, residual_tol)[0]


def conjugate_gradient_with_residual(
    matvec: MatVec,
    b: Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> tuple[Tensor, Tensor]:
    """:func:`conjugate_gradient` that also returns the residual ``r = b - A x``.

    CG keeps ``r`` up to date, so ``A x = b - r`` comes for free: ``x'Ax = x'(b - r)`` needs no
    further matrix-vector product (TRPO's ``s'As``).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r.dot(r)
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        pap = p.dot(ap)
        if not torch.isfinite(pap) or pap <= 0:
            break
        alpha = rr / pap
        x += alpha * p
        r -= alpha * ap
        rr_new = r.dot(r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, r


def max_step_length(shs: float, delta: float) -> float:
    """``beta = sqrt(2 delta / s'As)``: the step along s that makes the quadratic KL equal delta."""
    return math.sqrt(2.0 * delta / shs)


@dataclass
class LineSearchResult:
    accepted: bool
    steps: int  # trials evaluated
    fraction: float  # accepted fraction of the full step (0 if rejected)
    surrogate: float  # surrogate at the final parameters
    kl: float  # constraint value at the final parameters


def backtracking_line_search(
    params: Sequence[nn.Parameter],
    full_step: Tensor,
    evaluate: Callable[[], tuple[float, float]],
    surrogate_before: float,
    kl_limit: float,
    max_backtracks: int = 10,
    shrink: float = 0.5,
) -> LineSearchResult:
    """Try ``theta_old + shrink^k * full_step`` for k = 0, 1, ... (appendix C).

    ``evaluate()`` returns (surrogate, constraint) at the module's current parameters. The first
    trial whose surrogate improves on ``surrogate_before`` and whose constraint is ``<= kl_limit``
    is kept; the parameters are set in place. If none passes, the old parameters are restored and
    the result says so.
    """
    theta_old = parameters_to_vector(params).detach().clone()
    for k in range(max_backtracks):
        fraction = shrink**k
        vector_to_parameters(theta_old + fraction * full_step, params)
        surrogate, kl = evaluate()
        if (
            math.isfinite(surrogate)
            and math.isfinite(kl)
            and surrogate > surrogate_before
            and kl <= kl_limit
        ):
            return LineSearchResult(True, k + 1, fraction, surrogate, kl)
    vector_to_parameters(theta_old, params)
    surrogate, kl = evaluate()
    return LineSearchResult(False, max_backtracks, 0.0, surrogate, kl)
