"""The method registry: a method is a name bound to a sampler and a step rule.

Every gradient method in the paper runs the same loop (``trpo_bench.trainer``):
sample -> build the surrogate (eq. 14) and the KL constraint -> step. Methods differ only in
the pair below. Their config defaults live in ``presets/methods.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trpo_bench.config import ConfigError, load_preset
from trpo_bench.sampling import sample_single_path
from trpo_bench.steps import (
    StepRule,
    empirical_fim_step,
    max_kl_step,
    natural_gradient_step,
    trpo_step,
    vpg_step,
)

Sampler = Callable[..., object]


@dataclass(frozen=True)
class Method:
    """A gradient method binds a sampler to a step rule and runs the shared loop
    (``trainer.train``); a derivative-free method has a loop of its own, ``run(cfg, recorder)``,
    which writes through the same :class:`~trpo_bench.tracking.RunRecorder`."""

    name: str
    summary: str
    sampler: Sampler | None = None
    step_rule: StepRule | None = None
    run: Callable[..., dict] | None = None


def _registry() -> dict[str, Method]:
    presets = load_preset("methods")
    pairs: dict[str, tuple[Sampler, StepRule]] = {
        "trpo-single-path": (sample_single_path, trpo_step),
        "natural-gradient": (sample_single_path, natural_gradient_step),
        "max-kl": (sample_single_path, max_kl_step),
        "empirical-fim": (sample_single_path, empirical_fim_step),
        "trpo-gae": (sample_single_path, trpo_step),
        "vpg": (sample_single_path, vpg_step),
    }
    return {
        name: Method(name, presets[name]["summary"], sampler, step_rule)
        for name, (sampler, step_rule) in pairs.items()
    }


METHODS: dict[str, Method] = _registry()


def check_method(name: str) -> None:
    """Raise a :class:`ConfigError` naming the allowed methods if ``name`` is unknown."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (allowed: {', '.join(METHODS)})")
