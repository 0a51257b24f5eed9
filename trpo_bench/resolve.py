"""Resolve a run's configuration against the env and method registries: :func:`build_config`.

A run's :class:`~trpo_bench.config.TrainConfig` is assembled in layers, each overriding the one
before (``trpo_bench.config`` describes the keys):

1. the field defaults, and the defaults of the method's own keys (``Method.config_keys``);
2. the environment's preset (``presets/envs.yaml``: network sizes, paper budgets);
3. the method's preset (``Method.defaults``; for built-ins read from ``presets/methods.yaml``),
   then its settings for this env if it has any (``Method.env_presets``);
4. YAML config files given by the user, in order;
5. ``key=value`` overrides (``--set``), in order.

This module sits above the registries (``config`` <- ``envs``, ``methods`` <- ``resolve``), so
that the schema module ``trpo_bench.config`` imports no registry and every layer can import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trpo_bench.config import FIELDS, ConfigError, TrainConfig, apply_layer
from trpo_bench.envs.registry import env_spec
from trpo_bench.methods.registry import METHODS, check_method, check_method_config
from trpo_bench.run.checkpoint import env_state_problem

__all__ = ["build_config", "method_key_owners"]


def method_key_owners() -> dict[str, str]:
    """Every key a registered method declares -> the methods declaring it (comma-separated)."""
    owners: dict[str, list[str]] = {}
    for m in METHODS.values():
        for key in m.config_keys:
            owners.setdefault(key.name, []).append(m.name)
    return {k: ", ".join(v) for k, v in owners.items()}


def build_config(
    env: str,
    method: str,
    *,
    layers: Iterable[tuple[str, Mapping[str, Any]]] = (),
    preset: str = "quick",
) -> TrainConfig:
    """Resolve a run's configuration: defaults < env preset < method preset < ``layers``.

    ``layers`` are ``(source_name, mapping)`` pairs (config files, then ``--set``); a layer may
    itself set ``env`` or ``method``, but those are checked against the registries here, before
    anything runs. ``preset`` picks the env's budget block (``quick`` or ``paper``). A bad key or
    value raises a :class:`ConfigError` naming it and what is allowed.
    """
    layers = list(layers)
    # env and method may come from a layer; find the last word on each first.
    for source, layer in layers:
        env = layer.get("env", env)
        method = layer.get("method", method)
        for key, value in (("env", env), ("method", method)):
            if not isinstance(value, str):  # a list would pass YAML and fail deep inside
                raise ConfigError(
                    f"config key {key!r} in {source}: {value!r} is not a string (one {key} "
                    "per run; a workflow grid runs several)"
                )
    if not env:
        raise ConfigError("no environment given: pass --env (see `trpo-bench envs`)")
    env_spec(env)  # known, or inferred from the env gymnasium makes (a ConfigError if none)
    check_method(method)
    if preset not in ("quick", "paper"):
        raise ConfigError(f"unknown preset {preset!r} (allowed: quick, paper)")

    spec = METHODS[method]
    own = {key.name: key for key in spec.config_keys}
    foreign = {k: v for k, v in method_key_owners().items() if k not in own}

    def apply(layer: Mapping[str, Any], source: str) -> None:
        apply_layer(values, layer, source, own, foreign)

    values: dict[str, Any] = {f.name: getattr(TrainConfig(), f.name) for f in FIELDS.values()}
    values.update({name: key.default for name, key in own.items()})
    values["env"], values["method"] = env, method
    spec_of_env = env_spec(env)
    apply(spec_of_env.defaults, f"env preset {env}")
    if preset == "paper":
        apply(spec_of_env.paper, f"paper preset {env}")
    apply(spec.defaults, f"method preset {method}")
    # A method's settings for one env (methods.yaml: <method>.envs.<env>.defaults / .paper).
    on_env = spec.env_presets.get(env) or {}
    apply(on_env.get("defaults") or {}, f"method preset {method} on {env}")
    if preset == "paper":
        apply(on_env.get("paper") or {}, f"paper preset {method} on {env}")
    for source, layer in layers:
        apply(layer, source)
    cfg = TrainConfig(
        **{k: v for k, v in values.items() if k in FIELDS},
        method_options={k: values[k] for k in own},
    )
    check_method_config(cfg)
    if cfg.continue_episodes:
        problem = env_state_problem(env)
        if problem is not None:
            raise ConfigError(
                f"config key 'continue_episodes': true needs {env}'s envs saved mid-episode in "
                f"the checkpoint, and {problem}; with false (each iteration starts afresh) "
                "every method runs on it"
            )
    return cfg
