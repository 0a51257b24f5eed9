"""The public method API: what a sampler returns, what a step rule receives and returns, and how
a method registers itself (its config keys and presets). ``docs/methods.md`` walks through it.

Every gradient method runs the same loop (``trpo_bench.run.trainer.gradient_loop``)::

    batch = method.sampler(envs, policy, cfg, iteration, value_fn, generator)  # -> Batch
    stats = method.step_rule(policy, batch.objective, cfg, generator)        # -> StepStats

* A **sampler** (:class:`Sampler`) runs the current policy pi_old and returns a :class:`Batch`:
  the env steps it spent, the finished episodes (returns and lengths, for ``return_mean``), every
  state it visited (for the observation normalisers), progress columns of its own (``extra``)
  and the :class:`Objective` built from the data.
* The **objective** is the sampled surrogate ``L(theta)`` of eq. 14 and the states where the KL
  constraint is measured. Its public fields: ``kl_obs`` (those states, ``[n, ...]``),
  ``old_dist`` (pi_old's distribution there, detached), and, when every state carries one
  sampled action (single path), ``actions`` (``[n, ...]``), ``advantages`` (``[n]``, the
  A-hat or Q-hat the surrogate weighs, standardised when ``normalize_advantages``) and
  ``old_log_prob`` (``log pi_old(a_n|s_n)``, ``[n]``), and with a value baseline ``returns``
  (the value targets, ``[n]``); samplers whose states carry several actions (vine, eq. 15/16)
  leave them ``None``. A step rule uses these fields and the methods
  ``surrogate``, ``surrogate_and_grad``, ``kl`` and ``evaluate``, nothing else.
* A **step rule** (:data:`StepRule`) changes the policy in place and returns :class:`StepStats`.
  Every field of StepStats, and every key of its ``extra``, becomes a progress.csv column (and
  an MLflow metric) without being listed anywhere else. A step rule ends in
  ``trpo_bench.methods.steps.guard_step``, which undoes a step that leaves anything non-finite.
* A **method** (:class:`Method`) binds a sampler to a step rule, or brings a loop of its own
  (``run(cfg, recorder)``, the derivative-free searches). It declares its config keys
  (:class:`~trpo_bench.config.ConfigKey`: default, limits, help shown by
  ``trpo-bench train --help``; read as ``cfg.<name>``), the preset values of existing keys that
  make it that method (``defaults``; per env: ``env_presets``) and a check across keys
  (``check_config``). The built-in methods are registered in ``trpo_bench.methods.registry``; a
  package
  registers more through the entry-point group ``trpo_bench.methods`` (an entry point naming a
  :class:`Method`). The registry, the config schema (``trpo_bench.resolve.build_config``) and the
  workflow's grid checks all read the same registration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from trpo_bench.config import ConfigKey, TrainConfig
from trpo_bench.core.optim import flat_grad
from trpo_bench.core.policies import DistParams, Policy, select_states
from trpo_bench.core.value import ValueFunction
from trpo_bench.envs.registry import EnvVector

__all__ = [
    "Batch",
    "ConfigKey",
    "DistParams",
    "Method",
    "Objective",
    "Sampler",
    "StepRule",
    "StepStats",
]


class Objective:
    """The sampled surrogate ``L(theta)`` and the states where the KL constraint is measured.

    Subclasses set ``kl_obs`` (constraint states) and ``old_dist`` (pi_old's distribution there,
    detached) and implement :meth:`surrogate`; its value at theta_old is the baseline the line
    search must beat. Single-path objectives also set ``actions``, ``advantages`` and
    ``old_log_prob`` (one per state); others leave them ``None``.
    """

    kl_obs: Tensor
    old_dist: DistParams
    actions: Tensor | None = None
    advantages: Tensor | None = None
    old_log_prob: Tensor | None = None
    returns: Tensor | None = None  # [n] value targets (GAE returns) with a value baseline

    def surrogate(self, policy: Policy) -> Tensor:
        raise NotImplementedError

    def kl(self, policy: Policy, index: Tensor | None = None) -> Tensor:
        """Per-state ``KL(pi_old || pi_theta)`` over the constraint states (or a subset)."""
        if index is None:
            return policy.kl(self.old_dist, policy.dist_params(self.kl_obs))
        return policy.kl(
            select_states(self.old_dist, index), policy.dist_params(self.kl_obs[index])
        )

    def surrogate_and_grad(self, policy: Policy, params: list) -> tuple[float, Tensor]:
        """The surrogate at the current parameters and its gradient (a flat vector)."""
        surrogate = self.surrogate(policy)
        return float(surrogate.detach()), flat_grad(surrogate, params)

    @torch.no_grad()
    def evaluate(self, policy: Policy) -> tuple[float, Tensor]:
        """Surrogate value and per-state KL at the current parameters (no graph)."""
        return float(self.surrogate(policy)), self.kl(policy)

    def per_sample(self, who: str) -> tuple[Tensor, Tensor, Tensor]:
        """``(kl_obs, actions, advantages)``, or a TypeError naming ``who`` (a step rule) if
        this objective has no one-action-per-state samples (vine)."""
        if self.actions is None or self.advantages is None:
            raise TypeError(
                f"{who} needs one sampled action per state (a single-path sampler), "
                f"got {type(self).__name__}"
            )
        return self.kl_obs, self.actions, self.advantages


@dataclass
class StepStats:
    """What a step did; every field becomes a progress.csv column (:meth:`progress_columns`)."""

    surrogate_before: float = math.nan
    surrogate_after: float = math.nan
    expected_gain: float = math.nan  # g's (the linear model's predicted surrogate gain)
    kl_mean: float = 0.0
    kl_max: float = 0.0
    linesearch_steps: int = 0
    step_accepted: bool = False
    step_fraction: float = 0.0
    grad_norm: float = math.nan
    reject_reason: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def surrogate_gain(self) -> float:
        return self.surrogate_after - self.surrogate_before

    def progress_columns(self, between: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every field as a progress.csv column, in field order (``surrogate_gain`` after
        ``surrogate_after``), then ``between`` (the loop's own columns), then ``extra``'s
        keys, then ``reject_reason`` last. A field added here reaches progress.csv unlisted."""
        columns: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "reject_reason"):
                continue
            columns[f.name] = getattr(self, f.name)
            if f.name == "surrogate_after":
                columns["surrogate_gain"] = self.surrogate_gain
        return {**columns, **(between or {}), **self.extra, "reject_reason": self.reject_reason}


StepRule = Callable[[Policy, Objective, TrainConfig, torch.Generator], StepStats]
"""``step_rule(policy, objective, cfg, generator) -> StepStats``: change ``policy`` in place.
``generator`` is the iteration's torch generator (subsamples, minibatch orders)."""


@dataclass
class Batch:
    """What a sampler hands to the training loop."""

    objective: Objective
    env_steps: int  # every env step simulated for this batch (the budget counts them)
    episode_returns: list[float]  # episodes that ended in this batch (return_mean)
    episode_lengths: list[int]
    obs: Tensor  # every state visited (for normalisers)
    extra: dict[str, float]  # progress.csv columns of the sampler's own

    @property
    def actions(self) -> Tensor | None:
        return self.objective.actions

    @property
    def advantages(self) -> Tensor | None:
        return self.objective.advantages

    @property
    def old_dist(self) -> DistParams:
        return self.objective.old_dist


class Sampler(Protocol):
    """``sampler(envs, policy, cfg, iteration, value_fn, generator) -> Batch``.

    Draw all randomness from ``generator`` and from seeds derived from ``(cfg.seed,
    iteration)`` (``trpo_bench.sampling.single_path.iteration_seeds``): resume is then exact. Fit
    ``value_fn`` (None unless ``baseline: value``) on the batch if the method uses it."""

    def __call__(
        self,
        envs: EnvVector,
        policy: Policy,
        cfg: TrainConfig,
        iteration: int,
        value_fn: ValueFunction | None,
        generator: torch.Generator,
    ) -> Batch: ...


@dataclass(frozen=True)
class Method:
    """One method's registration.

    A gradient method binds a ``sampler`` to a ``step_rule`` and runs the shared loop
    (``trainer.gradient_loop``); a derivative-free method has a loop of its own,
    ``run(cfg, recorder)``, which writes through the same ``trpo_bench.run.recorder.RunRecorder``
    and returns the final policy artifact. ``config_keys`` are the method's own keys;
    ``defaults`` its preset values of any keys (fields or its own), applied after the env's
    preset; ``env_presets`` maps an env id to ``{"defaults": {...}, "paper": {...}}`` applied
    after that; ``check_config`` raises a ``ConfigError`` for a bad combination of keys.
    ``origin`` is filled in by the registry: ``built-in`` or the distribution's name.
    """

    name: str
    summary: str
    sampler: Sampler | None = None
    step_rule: StepRule | None = None
    run: Callable[..., dict] | None = None
    config_keys: tuple[ConfigKey, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    env_presets: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    check_config: Callable[[TrainConfig], None] | None = None
    origin: str = "built-in"

    def __post_init__(self) -> None:
        if (self.run is None) == (self.sampler is None or self.step_rule is None):
            raise TypeError(
                f"method {self.name!r}: give a sampler and a step_rule, or a run loop (not both)"
            )
