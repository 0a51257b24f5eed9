"""The method registry: the built-in methods and those plug-in packages register.

Every gradient method in the paper runs the same loop (``trpo_bench.run.trainer``):
sample -> build the surrogate (eq. 14) and the KL constraint -> step. Methods differ only in
the pair they bind (a sampler and a step rule), or bring a loop of their own (the
derivative-free searches). A registration is a :class:`~trpo_bench.api.Method`; the built-ins'
summaries and presets live in ``presets/methods.yaml``.

**Plug-ins.** An installed distribution adds methods through the entry-point group
``trpo_bench.methods``: each entry point names a :class:`~trpo_bench.api.Method` (or a
function returning one), e.g. in its ``pyproject.toml``::

    [project.entry-points."trpo_bench.methods"]
    random-search = "my_methods.random_search:METHOD"

The entry point's name must be the method's name. A plug-in that cannot be loaded, is not a
Method, takes a built-in's name or declares a key that clashes prints one warning line naming
it and where it comes from, and is left out; the built-ins never depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint
from typing import Any

from trpo_bench import plugins
from trpo_bench.api import Method, Sampler, StepRule
from trpo_bench.config import FIELDS, ConfigError, TrainConfig, load_preset
from trpo_bench.methods import cem, cma_es, ppo
from trpo_bench.methods.rwr import rwr_step
from trpo_bench.methods.search import check_config as check_search_config
from trpo_bench.methods.steps import (
    empirical_fim_step,
    max_kl_step,
    natural_gradient_step,
    trpo_step,
    vpg_step,
)
from trpo_bench.sampling.single_path import sample_single_path
from trpo_bench.sampling.vine import check_vine_config, sample_vine

ENTRY_POINT_GROUP = "trpo_bench.methods"

# name -> (sampler, step rule) or a run loop, and a check across keys.
_GRADIENT: dict[str, tuple[Sampler, StepRule]] = {
    "trpo-single-path": (sample_single_path, trpo_step),
    "trpo-vine": (sample_vine, trpo_step),
    "natural-gradient": (sample_single_path, natural_gradient_step),
    "max-kl": (sample_single_path, max_kl_step),
    "empirical-fim": (sample_single_path, empirical_fim_step),
    "trpo-gae": (sample_single_path, trpo_step),
    "ppo": (sample_single_path, ppo.ppo_step),
    "vpg": (sample_single_path, vpg_step),
    "rwr": (sample_single_path, rwr_step),
}
_LOOPS: dict[str, Callable[..., dict]] = {"cem": cem.run, "cma-es": cma_es.run}
_CHECKS: dict[str, Callable[[TrainConfig], None]] = {
    "trpo-vine": check_vine_config,
    "cem": check_search_config,
    "cma-es": check_search_config,
}
_KEYS = {"ppo": ppo.CONFIG_KEYS}


def builtin_methods() -> dict[str, Method]:
    """The methods shipped with trpo-bench: the gradient methods, then the searches."""
    presets = load_preset("methods")
    methods: dict[str, Method] = {}
    for name in [*_GRADIENT, *_LOOPS]:
        entry = presets[name]
        sampler, step_rule = _GRADIENT.get(name, (None, None))
        methods[name] = Method(
            name,
            entry["summary"],
            sampler=sampler,
            step_rule=step_rule,
            run=_LOOPS.get(name),
            config_keys=_KEYS.get(name, ()),
            defaults=entry.get("defaults") or {},
            env_presets=entry.get("envs") or {},
            check_config=_CHECKS.get(name),
        )
    return methods


def load_plugin(ep: EntryPoint, taken: Iterable[str]) -> Method:
    """The :class:`Method` an entry point names, checked; raises with the reason otherwise."""
    obj: Any = ep.load()
    if not isinstance(obj, Method) and callable(obj):
        obj = obj()
    if not isinstance(obj, Method):
        raise TypeError(f"it names a {type(obj).__name__}, not a trpo_bench.api.Method")
    if obj.name != ep.name:
        raise ValueError(f"the entry point is named {ep.name!r} but the method {obj.name!r}")
    if obj.name in taken:
        raise ValueError(f"method {obj.name!r} is already registered")
    clash = [k.name for k in obj.config_keys if k.name in FIELDS]
    if clash:
        raise ValueError(f"its config keys {clash} are TrainConfig fields already")
    return dataclasses.replace(obj, origin=plugins.origin(ep))


def plugin_methods(taken: Iterable[str]) -> dict[str, Method]:
    """The methods of the entry-point group; each one that fails is one warning line."""
    taken = set(taken)
    methods: dict[str, Method] = {}
    for method in plugins.load_plugins(
        ENTRY_POINT_GROUP, "method", lambda e: load_plugin(e, taken)
    ):
        methods[method.name] = method
        taken.add(method.name)
    return methods


def _registry() -> dict[str, Method]:
    methods = builtin_methods()
    methods.update(plugin_methods(methods))
    return methods


METHODS: dict[str, Method] = _registry()


def check_method(name: str) -> None:
    """Raise a :class:`ConfigError` naming the allowed methods if ``name`` is unknown."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (allowed: {', '.join(METHODS)})")


def check_method_config(cfg: TrainConfig) -> None:
    """Raise a :class:`ConfigError` if ``cfg`` breaks a constraint of its method."""
    if cfg.continue_episodes and METHODS[cfg.method].sampler is not sample_single_path:
        allowed = [m.name for m in METHODS.values() if m.sampler is sample_single_path]
        raise ConfigError(
            f"config key 'continue_episodes': true is not allowed with {cfg.method} (its "
            f"samples are not single paths; allowed with: {', '.join(allowed)})"
        )
    check = METHODS[cfg.method].check_config
    if check is not None:
        check(cfg)
