"""What a run owns and leaves behind: its envs, policy and value function (:class:`Learner`,
built from the seed alone), and the final policy artifact (``policy.pt``) and its loading.

Shared by the gradient loop (``trpo_bench.run.trainer``) and the derivative-free searches
(``trpo_bench.methods.search``), which build the same envs and policy initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.core.policies import Policy, make_policy
from trpo_bench.core.value import ValueFunction
from trpo_bench.envs.registry import env_options, make_env
from trpo_bench.envs.workers import AnyEnvVector, make_env_vector
from trpo_bench.run.checkpoint import load_data

__all__ = ["Learner", "build_learner", "load_policy", "policy_artifact", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """The torch device of the ``device`` config key: ``cpu``; ``cuda`` (a ConfigError,
    before any work starts, when torch sees no GPU); ``auto`` (cuda if torch sees one)."""
    if name == "cpu":
        return torch.device("cpu")
    if name not in ("cuda", "auto"):
        raise ConfigError(f"device {name!r} is not one of cpu, cuda, auto")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "auto":
        return torch.device("cpu")
    raise ConfigError(
        f"device 'cuda' asked for, but this torch ({torch.__version__}) sees no CUDA GPU "
        "(allowed here: cpu, auto)"
    )


@dataclass
class Learner:
    """What a run owns: its envs, policy and (optional) value function."""

    envs: AnyEnvVector
    policy: Policy
    value_fn: ValueFunction | None


def build_learner(cfg: TrainConfig, device: torch.device | None = None) -> Learner:
    """Envs, policy and value function, initialised from ``cfg.seed`` alone (on the CPU, so
    every device starts from the same weights), then moved to ``device`` (default: the
    ``device`` key's). The envs always step on the CPU."""
    device = resolve_device(cfg.device) if device is None else device
    envs = make_env_vector(cfg.env, cfg.num_envs, env_options(cfg), cfg.env_workers)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        policy = make_policy(
            envs.observation_space,
            envs.action_space,
            cfg.hidden_sizes,
            cfg.log_std_init,
            cfg.normalize_observations,
            cfg.atari_frame_offset,
        )
        value_fn = None
        if cfg.baseline == "value":
            value_fn = ValueFunction(
                envs.observation_space.shape,
                cfg.vf_hidden_sizes,
                cfg.vf_learning_rate,
                cfg.normalize_observations,
                fused_adam=cfg.vf_fused_adam,
                frame_offset=cfg.atari_frame_offset,
            )
    if device.type != "cpu":  # on the CPU, the very same tensors as before the option existed
        policy.to(device)
        if value_fn is not None:
            value_fn.to(device)  # in place: its Adam keeps the same parameters
    return Learner(envs, policy, value_fn)


def policy_artifact(cfg: TrainConfig, policy: Policy) -> dict[str, Any]:
    """The final policy: weights plus what it takes to rebuild it (``load_policy``)."""
    return {
        "env": cfg.env,
        "env_options": env_options(cfg),
        "hidden_sizes": cfg.hidden_sizes,
        "log_std_init": cfg.log_std_init,
        "normalize_observations": cfg.normalize_observations,
        "frame_offset": cfg.atari_frame_offset,
        "state_dict": policy.state_dict(),
    }


def load_policy(path: Path) -> Policy:
    """Rebuild a policy saved by a run (``policy.pt``), read as data only
    (:func:`~trpo_bench.run.checkpoint.load_data`: a file that is not is refused, unrun)."""
    data = load_data(path, "policy", "retrain its run, or ask its author for the run folder")
    if not isinstance(data, dict) or not {"env", "hidden_sizes", "state_dict"} <= set(data):
        raise ConfigError(
            f"{path} is not a trpo-bench policy (no env, hidden_sizes and state_dict); "
            "load a policy.pt that a trpo-bench run wrote"
        )
    env = make_env(data["env"], data.get("env_options"))
    policy = make_policy(
        env.observation_space,
        env.action_space,
        data["hidden_sizes"],
        data["log_std_init"],
        data["normalize_observations"],
        float(data.get("frame_offset", 0.0)),  # policies saved before the key: 0
    )
    policy.load_state_dict(data["state_dict"])
    env.close()
    return policy
