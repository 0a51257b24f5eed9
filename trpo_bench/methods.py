"""The method registry: a method is a name bound to a sampler and a step rule.

Every gradient method in the paper runs the same loop (``trpo_bench.trainer``):
sample -> build the surrogate (eq. 14) and the KL constraint -> step. Methods differ only in
the pair below. Their config defaults live in ``presets/methods.yaml``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trpo_bench.config import ConfigError, TrainConfig, load_preset
from trpo_bench.sampling import sample_single_path
from trpo_bench.steps import (
    StepRule,
    empirical_fim_step,
    max_kl_step,
    natural_gradient_step,
    trpo_step,
    vpg_step,
)
from trpo_bench.vine import check_vine_config, sample_vine

Sampler = Callable[..., object]


def _baseline(module: str, name: str) -> Callable[..., Any]:
    """``baselines.<module>.<name>``, imported on first call (baselines import trpo_bench)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"baselines.{module}"), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"baselines.{module}.{name}"
    return call


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
        "trpo-vine": (sample_vine, trpo_step),
        "natural-gradient": (sample_single_path, natural_gradient_step),
        "max-kl": (sample_single_path, max_kl_step),
        "empirical-fim": (sample_single_path, empirical_fim_step),
        "trpo-gae": (sample_single_path, trpo_step),
        "vpg": (sample_single_path, vpg_step),
        "rwr": (sample_single_path, _baseline("rwr", "rwr_step")),
    }
    methods = {
        name: Method(name, presets[name]["summary"], sampler, step_rule)
        for name, (sampler, step_rule) in pairs.items()
    }
    # Derivative-free search runs a loop of its own (baselines/search.py).
    for name, module in (("cem", "cem"), ("cma-es", "cma_es")):
        methods[name] = Method(name, presets[name]["summary"], run=_baseline(module, "run"))
    return methods


METHODS: dict[str, Method] = _registry()


def check_method(name: str) -> None:
    """Raise a :class:`ConfigError` naming the allowed methods if ``name`` is unknown."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (allowed: {', '.join(METHODS)})")


# A method's own checks of a resolved config (constraints across keys), run by build_config.
CONFIG_CHECKS: dict[str, Callable[[TrainConfig], None]] = {
    "trpo-vine": check_vine_config,
    "cem": _baseline("search", "check_config"),
    "cma-es": _baseline("search", "check_config"),
}


def check_method_config(cfg: TrainConfig) -> None:
    """Raise a :class:`ConfigError` if ``cfg`` breaks a constraint of its method."""
    check = CONFIG_CHECKS.get(cfg.method)
    if check is not None:
        check(cfg)
