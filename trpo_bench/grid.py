"""The experiment grid of the Snakemake workflow: env x method x seed, overrides and sweeps.

A grid file (``config/*.yaml``, structure checked by ``workflow/schemas/config.schema.yaml``)
names envs, methods and seeds. Every (env, method) pair not excluded runs once per seed and per
*variant*: a method's variants are the cartesian product of its sweeps (e.g. the natural
gradient's fixed step size in factors of 3, sec. 8.1), or the method alone when it has none.
A run's ``trpo-bench train`` settings are, in order: the budget preset (``quick`` or ``paper``),
the ``overrides`` entries that match its env and method, then its variant's swept values.

Names are checked against the registries (``trpo_bench.envs.registry.ENV_SPECS``,
``trpo_bench.methods.registry.METHODS``, ``TrainConfig``'s fields), never against a fixed list, so a
new env or method joins a grid by config alone. Every problem is raised as one
:class:`~trpo_bench.config.ConfigError` before any job starts.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trpo_bench.config import FIELDS, ConfigError
from trpo_bench.envs.registry import ENV_SPECS, FAMILIES, env_spec
from trpo_bench.variants import variant_name

# This module must import without torch: the Snakefile imports it, and every cluster job
# re-reads the Snakefile. The method registry (trpo_bench.methods.registry, trpo_bench.resolve)
# loads
# torch and the plug-ins, so the functions that need it import it when called.

# Keys the workflow sets itself for every run; a grid may not override them.
WORKFLOW_KEYS = ("env", "method", "seed", "experiment", "mlflow_uri", "env_workers", "run_name")
RESOURCE_KEYS = ("threads", "mem_mb", "runtime")


@dataclass(frozen=True)
class Run:
    """One training job of the grid."""

    env: str
    method: str
    variant: str  # the method, or the method and its swept values: natural-gradient@step_size=0.1
    seed: int
    sweep: tuple[tuple[str, Any], ...]  # this variant's swept (key, value) pairs
    settings: tuple[tuple[str, Any], ...]  # every --set of this run: overrides, then the sweep

    @property
    def env_slug(self) -> str:
        return env_slug(self.env)

    @property
    def folder(self) -> str:
        """The run folder, relative to the results root."""
        return f"runs/{self.env_slug}/{self.variant}/seed{self.seed}"


def env_slug(env: str) -> str:
    """An env id as one path component (``ALE/Pong-v5`` -> ``ALE-Pong-v5``)."""
    return env.replace("/", "-")


def method_variants(cfg: Mapping[str, Any], method: str) -> list[tuple[tuple[str, Any], ...]]:
    """The swept (key, value) tuples of ``method``: the product of its ``sweeps`` entries."""
    axes = [(s["key"], list(s["values"])) for s in cfg.get("sweeps", []) if s["method"] == method]
    if not axes:
        return [()]
    keys = [k for k, _ in axes]
    return [
        tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))
    ]


def _names(value: str | Sequence[str]) -> list[str]:
    """An entry's ``env`` or ``method``: one name or a list of names."""
    return [value] if isinstance(value, str) else list(value)


def _matches(entry: Mapping[str, Any], env: str, method: str) -> bool:
    return env in _names(entry.get("env", env)) and method in _names(entry.get("method", method))


def is_excluded(cfg: Mapping[str, Any], env: str, method: str) -> bool:
    return any(_matches(e, env, method) for e in cfg.get("exclude", []))


def run_settings(cfg: Mapping[str, Any], env: str, method: str) -> dict[str, Any]:
    """The ``overrides`` entries matching (env, method), merged in file order."""
    settings: dict[str, Any] = {}
    for entry in cfg.get("overrides", []):
        if _matches(entry, env, method):
            settings.update(entry.get("set", {}) or {})
    return settings


def expand_grid(cfg: Mapping[str, Any]) -> list[Run]:
    """Every training job of the grid, in the order env, method, variant, seed."""
    runs = []
    for env in cfg["envs"]:
        for method in cfg["methods"]:
            if is_excluded(cfg, env, method):
                continue
            base = run_settings(cfg, env, method)
            for sweep in method_variants(cfg, method):
                settings = {**base, **dict(sweep)}
                variant = variant_name(method, sweep)
                for seed in cfg["seeds"]:
                    runs.append(
                        Run(env, method, variant, int(seed), sweep, tuple(settings.items()))
                    )
    return runs


def _unknown(what: str, name: Any, allowed: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r} in {where}{hint} (allowed: {', '.join(allowed)})"


def _key_problems(keys: Iterable[str], where: str, method_keys: Iterable[str]) -> list[str]:
    problems = []
    allowed = [*(k for k in FIELDS if k not in WORKFLOW_KEYS), *method_keys]
    for key in keys:
        if key in WORKFLOW_KEYS:
            problems.append(f"{where} sets {key!r}, which the workflow sets itself")
        elif key not in allowed:
            problems.append(_unknown("config key", key, allowed, where))
    return problems


def grid_problems(
    cfg: Mapping[str, Any],
    env_families: Mapping[str, str] | None = None,
    methods: Sequence[str] | None = None,
    method_keys: Sequence[str] | None = None,
) -> list[str]:
    """Every problem of a schema-valid grid, checked against the registries (empty: fine).

    An ``overrides`` entry naming a known env that the grid does not run is not a problem
    but a warning line on stderr (it applies to no run).

    ``env_families`` (env id -> family), ``methods`` and ``method_keys`` (the config keys
    methods declare) default to the registries, built-in and plug-in methods alike.
    """
    inferred: list[str] = []
    if env_families is None:
        env_families = {e.id: e.family for e in ENV_SPECS.values()}
        # An env no preset knows runs if gymnasium makes it (a spec inferred from the env).
        for env in cfg["envs"]:
            if env not in env_families:
                try:
                    env_families[env] = env_spec(env).family
                except ConfigError as e:
                    inferred.append(f"envs: {e}")
    if methods is None or method_keys is None:
        from trpo_bench.methods.registry import METHODS  # torch: see the imports
        from trpo_bench.resolve import method_key_owners

        methods = list(METHODS) if methods is None else methods
        method_keys = list(method_key_owners()) if method_keys is None else method_keys
    envs, families = list(env_families), sorted({*env_families.values(), *FAMILIES})
    problems = inferred or [
        _unknown("env", e, envs, "envs") for e in cfg["envs"] if e not in env_families
    ]
    problems += [
        _unknown("method", m, methods, "methods") for m in cfg["methods"] if m not in methods
    ]
    for section in ("overrides", "exclude", "sweeps"):
        for i, entry in enumerate(cfg.get(section, [])):
            where = f"{section}[{i}]"
            for env in _names(entry.get("env", [])):
                if env not in env_families:
                    problems.append(_unknown("env", env, envs, where))
                elif section == "overrides" and env not in cfg["envs"]:
                    # A warning, not a refusal: a shared base config may hold overrides for
                    # envs that a smaller grid read on top of it does not run.
                    print(
                        f"trpo-bench: warning: {where} names env {env!r}, which is not in the "
                        "grid's envs: it applies to no run (add the env to envs, or check the "
                        "name)",
                        file=sys.stderr,
                    )
            for method in _names(entry.get("method", [])):
                if method not in methods:
                    problems.append(_unknown("method", method, methods, where))
            if section == "overrides":
                problems += _key_problems(entry.get("set", {}) or {}, where, method_keys)
            if section == "sweeps":
                problems += _key_problems([entry["key"]], where, method_keys)
    for key in cfg.get("resources", {}):
        if key not in env_families and key not in families:
            problems.append(_unknown("env or env family", key, [*families, *envs], "resources"))
    for env in cfg["envs"]:
        if env in env_families and not _resource_entry(cfg, env, env_families[env]):
            problems.append(
                f"resources: no entry for env {env!r} or its family {env_families[env]!r}"
            )
    if not problems and not expand_grid(cfg):
        problems.append("the grid is empty: every (env, method) pair is excluded")
    return problems


def _resource_entry(cfg: Mapping[str, Any], env: str, family: str) -> Mapping[str, Any] | None:
    res = cfg.get("resources", {})
    return res.get(env) or res.get(family)


def run_config(run: Run, preset: str):  # -> trpo_bench.config.TrainConfig
    """The full training config of one run of the grid, as ``trpo-bench train`` will resolve
    it; a bad value (type, range) raises a ConfigError naming the run."""
    from trpo_bench.resolve import build_config  # torch: see the imports

    layers = [("the grid's overrides and sweeps", dict(run.settings))]
    try:
        return build_config(run.env, run.method, layers=layers, preset=preset)
    except ConfigError as e:
        raise ConfigError(f"run {run.env}/{run.variant}: {e}") from None


def check_runs(cfg: Mapping[str, Any], runs: Sequence[Run]) -> None:
    """Resolve each run's full training config once per (env, variant) (:func:`run_config`)."""
    seen = set()
    for run in runs:
        if (run.env, run.variant) not in seen:
            seen.add((run.env, run.variant))
            run_config(run, cfg["preset"])


def checked_runs(cfg: Mapping[str, Any]) -> list[Run]:
    """The grid's runs after every registry and value check (raises one ConfigError)."""
    problems = grid_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    runs = expand_grid(cfg)
    check_runs(cfg, runs)
    return runs


def check_grid_claims(cfg: Mapping[str, Any]) -> None:
    """Check the grid's ``claims`` (``trpo_bench.analysis.claims``) against the registries and the
    run
    figures; a claim about an env or method this grid does not run is allowed (it is reported
    undecided), a misspelt one is not. Raises one ConfigError."""
    from trpo_bench.analysis.claims import check_claims
    from trpo_bench.analysis.tables import (
        RUN_FIGURES,  # pandas, scipy, matplotlib: not for every job
    )
    from trpo_bench.methods.registry import METHODS  # torch: see the imports

    metrics = [*RUN_FIGURES, "final_train_return", "average_train_return"]
    envs = [*ENV_SPECS, *(e for e in cfg.get("envs", []) if e not in ENV_SPECS)]
    problems = check_claims(cfg.get("claims", []), envs, list(METHODS), metrics)
    if problems:
        raise ConfigError("claims: " + "; ".join(problems))


def resources_for(cfg: Mapping[str, Any], env: str) -> dict[str, int]:
    """threads, mem_mb, runtime (minutes) and gpu (GPUs, 0 unless the entry asks; the SLURM
    executor plugin's ``gpu`` resource) of a training job on ``env``: the ``resources`` entry
    of the env id, else of its family (``trpo_bench.envs.registry.ENV_SPECS``)."""
    entry = _resource_entry(cfg, env, env_spec(env).family)
    if entry is None:
        raise ConfigError(f"resources: no entry for env {env!r} or its family")
    return {**{k: int(entry[k]) for k in RESOURCE_KEYS}, "gpu": int(entry.get("gpu", 0))}


def train_argv(
    run: Run, cfg: Mapping[str, Any], out: str | Path, mlflow_uri: str, threads: int
) -> list[str]:
    """The ``trpo-bench train`` arguments of one run (after the program name)."""
    argv = ["train", "--env", run.env, "--method", run.method, "--seed", str(run.seed)]
    argv += ["--out", str(out), "--preset", cfg["preset"]]
    sets = {
        **dict(run.settings),
        "experiment": cfg["experiment"],
        "mlflow_uri": mlflow_uri,
        # The job's cores step its envs (trpo_bench.envs.workers): no number changes with them.
        "env_workers": threads,
        # A swept run is told apart in MLflow by its variant (natural-gradient@step_size=3).
        "run_name": f"{run.env}/{run.variant}/seed{run.seed}",
    }
    for key, value in sets.items():
        argv += ["--set", f"{key}={_yaml_scalar(value)}"]
    return argv


def _yaml_scalar(value: Any) -> str:
    """``value`` as YAML that ``trpo_bench.config.parse_overrides`` reads back unchanged.

    A grid of thousands of runs repeats a few values: each distinct one is dumped once (YAML's
    emitter was 9% of planning a 6,300-run grid)."""
    if type(value) is int:  # not bool: YAML writes those true / false
        return str(value)
    return _yaml_dump(json.dumps(value))


@functools.lru_cache(maxsize=4096)
def _yaml_dump(value_json: str) -> str:
    import yaml

    return (
        yaml.safe_dump(json.loads(value_json), default_flow_style=True, width=10_000)
        .strip()
        .removesuffix("\n...")
        .strip()
    )


def tracking_uri(cfg: Mapping[str, Any], results: str | Path) -> str:
    """The MLflow store every job of the grid logs to: ``mlflow_uri`` from the grid, else
    $MLFLOW_TRACKING_URI, else sqlite ``mlflow.db`` in the results root (an absolute path, so
    that jobs running elsewhere, on a cluster node, find the same store).

    Not ``trpo_bench.run.mlflow_log.default_tracking_uri``: that one puts the store beside a
    run folder (a lone ``trpo-bench train``), this one in the grid's results root."""
    if cfg.get("mlflow_uri"):
        return str(cfg["mlflow_uri"])
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(results).resolve() / 'mlflow.db').as_posix()}"


def expected_runs_records(runs: Sequence[Run], results: str | Path) -> list[dict[str, Any]]:
    """The planned runs as plain records (for the aggregation job's params)."""
    return [
        {
            "env": r.env,
            "method": r.method,
            "variant": r.variant,
            "seed": r.seed,
            "sweep": dict(r.sweep),
            "folder": str(Path(results) / r.folder),
        }
        for r in runs
    ]


def schema_error_message(error: Exception) -> str:
    """One line for a failed ``snakemake.utils.validate``: where in the config, and what.

    ``error`` is the WorkflowError that ``validate`` raised while handling jsonschema's
    ValidationError, which gives the path and the message.
    """
    import jsonschema

    candidates = [error.__cause__, error.__context__, *error.args]
    cause = next((a for a in candidates if isinstance(a, jsonschema.ValidationError)), None)
    if cause is None:
        return str(error)
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in cause.absolute_path)
    where = f"key {path.lstrip('.')!r}: " if path else ""
    message = cause.message
    if "x-error" in cause.schema:  # the schema's own words for this key's rule
        message = f"{cause.instance!r}: {cause.schema['x-error']}"
    elif cause.validator == "additionalProperties":
        props = cause.schema.get("properties", {})
        extra = [k for k in cause.instance if k not in props]
        hints = []
        for key in extra:
            close = difflib.get_close_matches(str(key), props, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        message = f"unknown key {', '.join(hints)} (allowed: {', '.join(props)})"
    return f"{where}{message}"
