"""Dense reference computations for tests: exact matrices where the code uses products."""

import torch
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector


def dense_kl_hessian(policy, obs):
    """The exact Hessian of mean KL(pi_old || pi_theta) at theta_old, by autograd.functional."""
    named = list(policy.named_parameters())
    theta0 = parameters_to_vector(policy.parameters()).detach()
    with torch.no_grad():
        old = tuple(t.detach() for t in policy.dist_params(obs))

    class _Dist(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            return self.p.dist_params(x)

    def mean_kl(theta):
        params, i = {}, 0
        for name, p in named:
            params[f"p.{name}"] = theta[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        dist = functional_call(_Dist(policy), params, (obs,))
        return policy.kl(old, dist).mean()

    return torch.autograd.functional.hessian(mean_kl, theta0)


def dense_empirical_fisher(policy, obs, actions):
    """mean_n g_n g_n' with g_n = grad log pi(a_n|s_n), one sample at a time (no vmap)."""
    params = policy.policy_parameters()
    rows = []
    for o, a in zip(obs, actions, strict=True):
        logp = policy.log_prob(policy.dist_params(o[None]), a[None]).sum()
        grads = torch.autograd.grad(logp, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    g = torch.stack(rows)
    return g.T @ g / len(rows)
