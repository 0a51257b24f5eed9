"""Typed run configuration, resolved once and validated at the edge.

A run's configuration is one :class:`TrainConfig`. It is assembled in layers, each overriding
the one before:

1. the field defaults below (documented, with their allowed ranges);
2. the environment's preset (``presets/envs.yaml``: network sizes, paper budgets);
3. the method's preset (``presets/methods.yaml``: what makes a method that method), then its
   settings for this env if it has any (``envs: {<env>: {defaults, paper}}`` in its entry);
4. YAML config files given by the user, in order;
5. ``key=value`` overrides (``--set``), in order.

Every value is checked against its field's type and range (:func:`apply_layer`, called by
``trpo_bench.resolve.build_config``, which reads the env and method registries); a bad value
raises :class:`ConfigError` naming the key, the value and what is allowed, before any work starts.

A method may declare config keys of its own (:class:`ConfigKey`, listed on its registration,
``trpo_bench.api.Method.config_keys``): they are set like every other key, checked the same way,
held in ``TrainConfig.method_options`` and read as attributes (``cfg.clip_range``). This module
imports no other trpo_bench module: every other layer may import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A user error in the configuration: the message says what is wrong and what is allowed."""


def _f(default: Any, doc: str, **check: Any) -> Any:
    """A dataclass field with a docstring and validation metadata (min, max, choices, ...)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc, **check})
    return field(default=default, metadata={"doc": doc, **check})


@dataclass(frozen=True)
class ConfigKey:
    """A config key a method declares (``trpo_bench.api.Method.config_keys``).

    ``default`` fixes the type (bool, int, float, str or a list of ints); ``doc`` is shown by
    ``trpo-bench train --help``; ``checks`` are the limits a TrainConfig field may carry:
    ``min``, ``max``, ``min_exclusive``, ``max_exclusive``, ``choices``, ``nonempty``,
    ``item_min``. The name must not be a TrainConfig field.
    """

    name: str
    default: Any
    doc: str
    checks: Mapping[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> Any:
        return list[int] if isinstance(self.default, list) else type(self.default)

    def __post_init__(self) -> None:
        if self.type not in (bool, int, float, str, list[int]):
            raise TypeError(
                f"config key {self.name!r}: default {self.default!r} is not a bool, int, float, "
                "str or list of ints"
            )
        unknown = set(self.checks) - set(CHECKS)
        if unknown:
            raise TypeError(
                f"config key {self.name!r}: unknown checks {sorted(unknown)} "
                f"(allowed: {', '.join(CHECKS)})"
            )


CHECKS = ("min", "max", "min_exclusive", "max_exclusive", "choices", "nonempty", "item_min")


@dataclass
class TrainConfig:
    """Everything one training run needs. Field docs are shown by ``trpo-bench train --help``."""

    env: str = _f("", "Environment id (see `trpo-bench envs`).", choices_from="envs")
    method: str = _f(
        "trpo-single-path", "Method (see `trpo-bench methods`).", choices_from="methods"
    )
    seed: int = _f(
        0,
        "Run seed: every env, the policy init and the action noise derive from it.",
        min=0,
        max=2**64 - 1,  # torch.manual_seed's limit
    )

    # Budget: every method honours both, so methods compare at equal samples.
    iterations: int = _f(50, "Policy iterations (updates).", min=1)
    steps_per_iter: int = _f(5000, "Env steps simulated per iteration, all envs together.", min=1)
    num_envs: int = _f(
        8, "Environments stepped together as a vector (one policy call per step).", min=1, max=4096
    )
    continue_episodes: bool = _f(
        False,
        "Single-path sampling: each iteration's envs go on from where the last iteration's batch "
        "cut them (episodes run across iterations, as Atari PPO implementations sample); false, "
        "the paper's sec. 5.1: every iteration starts each env on a fresh seeded episode.",
    )

    # The surrogate and its constraint (eq. 14, sec. 6).
    gamma: float = _f(0.99, "Discount factor.", min=0.0, max=1.0)
    delta: float = _f(
        0.01, "KL step size: mean KL(pi_old || pi_new) <= delta. Paper: 0.01.", min_exclusive=0.0
    )
    baseline: str = _f(
        "none",
        "Subtracted from Q-hat: none (the paper's single path) or value "
        "(a neural value function, fit each iteration).",
        choices=("none", "value"),
    )
    gae_lambda: float = _f(
        1.0,
        "GAE(lambda) with a value baseline; 1.0 = Monte-Carlo Q-hat minus "
        "baseline (the paper), 0.0 = one-step TD error.",
        min=0.0,
        max=1.0,
    )
    normalize_advantages: bool = _f(
        True,
        "Standardise advantages over the batch (subtract the batch mean, divide by the std). "
        "The mean subtraction is a constant baseline: it changes the single-path gradient and "
        "so the TRPO step direction (measured cosine 0.13-0.53 on trained policies); the "
        "division only rescales g, which TRPO's beta cancels but a fixed natural-gradient step "
        "does not. The paper's single path used raw Q-hat (--preset paper: off).",
    )
    normalize_observations: bool = _f(False, "Running mean/std normalisation of observations.")

    # The step (app. C).
    cg_iters: int = _f(10, "Conjugate-gradient iterations k. Paper: 10.", min=1, max=1000)
    cg_damping: float = _f(
        0.1,
        "Damping lambda added to the Fisher in CG: (A + lambda I). "
        "Paper: not given; common: 0.1 or 1e-3.",
        min=0.0,
    )
    cg_residual_tol: float = _f(
        1e-10, "CG stops early once the squared residual r'r falls below this.", min=0.0
    )
    fvp_subsample: float = _f(
        0.1,
        "Fraction of the batch's states used for Fisher-vector products. Paper: 0.1.",
        min_exclusive=0.0,
        max=1.0,
    )
    linesearch_backtracks: int = _f(
        10, "Line-search trials: step * shrink**k, k < this.", min=1, max=100
    )
    linesearch_shrink: float = _f(
        0.5, "Line-search shrink factor per trial.", min_exclusive=0.0, max_exclusive=1.0
    )
    step_size: float = _f(
        0.1, "Natural gradient only: fixed step eps in theta += eps A^-1 g.", min_exclusive=0.0
    )
    learning_rate: float = _f(
        3e-4, "Adam step size for first-order methods (vpg).", min_exclusive=0.0
    )

    # Vine sampling (sec. 5.2; method trpo-vine). Per iteration: num_envs trunk rollouts, then
    # K branches of H steps from each of N rollout-set states drawn from the trunks, with
    # trunk steps + branch steps = steps_per_iter (see trpo_bench.sampling.vine).
    vine_branch_length: int = _f(
        100,
        "Vine: steps H of each branch rollout from (s_n, a_k); Q-hat is the discounted sum of "
        "its rewards. Paper: 50 (swimmer), 100 (hopper, walker).",
        min=1,
    )
    vine_branches_per_state: int = _f(
        4,
        "Vine: actions K branched at each rollout-set state (a_k ~ pi for continuous actions); "
        "a discrete space of at most K actions is enumerated (eq. 15), a larger one draws K "
        "actions uniformly. Paper: 4. At least 2 (eq. 16 compares actions).",
        min=2,
    )
    vine_trunk_share: float = _f(
        0.2,
        "Vine: least share of steps_per_iter spent on the trunks; the rest buys "
        "N = floor(rest / (K H)) rollout-set states. Paper: 16 x 1000 trunk steps per batch.",
        min_exclusive=0.0,
        max_exclusive=1.0,
    )
    vine_batch_branches: int = _f(
        64,
        "Vine: branch rollouts stepped together as one vector of envs, built once per run "
        "(speed vs memory: about 1 MB per MuJoCo env).",
        min=1,
    )

    # Derivative-free search (methods cem, cma-es; trpo_bench/methods/search.py). A generation runs
    # population_size candidates (deterministic actions) and the distribution's mean, each on
    # the same episodes_per_candidate seeded episodes, cut so that it simulates at most
    # steps_per_iter steps; iteration i runs generations until the run has simulated
    # (i + 1) * steps_per_iter steps. num_envs envs are stepped as one vector.
    population_size: int = _f(
        0,
        "CEM/CMA-ES: candidates per generation; 0: derived from the budget, "
        "steps_per_iter // (episodes_per_candidate * time limit) - 1 (at least 4), so "
        "full-length episodes fit; an explicit value (>= 2) may cut episodes short.",
        min=0,
    )
    episodes_per_candidate: int = _f(
        1,
        "CEM/CMA-ES: episodes each candidate (and the mean) is run for; its fitness is the "
        "mean return.",
        min=1,
    )
    elite_fraction: float = _f(
        0.2,
        "CEM: share of the population (at least 2) whose mean and variance become the next "
        "search distribution. Typical: 0.05-0.3.",
        min_exclusive=0.0,
        max=1.0,
    )
    cem_init_std: float = _f(
        1.0, "CEM: initial standard deviation of every parameter.", min_exclusive=0.0
    )
    cem_extra_std: float = _f(
        1.0,
        "CEM (noisy CEM, Szita & Lorincz 2006): std of the noise added to the elite variance, "
        "sigma^2 = var(elite) + cem_extra_std^2 * max(0, 1 - i / cem_extra_decay_iters) in "
        "iteration i; 0: plain CEM.",
        min=0.0,
    )
    cem_extra_decay_iters: int = _f(
        25,
        "CEM: iterations (shares of the sample budget) over which the added noise decays "
        "linearly to 0.",
        min=1,
    )
    cma_sigma0: float = _f(
        0.5,
        "CMA-ES: initial step size sigma (std of every parameter at the start).",
        min_exclusive=0.0,
    )
    cma_diagonal: bool = _f(
        False,
        "CMA-ES: adapt a diagonal covariance only (sep-CMA-ES, Ros & Hansen 2008): O(n) per "
        "generation instead of O(n^2) plus O(n^3) decompositions; for networks of 1000s of "
        "weights, where full CMA-ES costs more than the simulation.",
    )

    # Reward-weighted regression (method rwr; trpo_bench/methods/rwr.py).
    rwr_temperature: float = _f(
        1.0,
        "RWR: each sampled action weighs exp(Q-hat / rwr_temperature) in the refit (Q-hat "
        "standardised when normalize_advantages); smaller: greedier. Typical: 0.25-2.",
        min_exclusive=0.0,
    )
    rwr_fit_iters: int = _f(
        20, "RWR: L-BFGS iterations of the weighted maximum-likelihood refit.", min=1
    )

    # Value function (baseline: value).
    vf_hidden_sizes: list[int] = _f([64, 64], "Value network hidden layer sizes.", item_min=1)
    vf_learning_rate: float = _f(1e-3, "Value network Adam step size.", min_exclusive=0.0)
    vf_epochs: int = _f(10, "Value network epochs per iteration.", min=1)
    vf_minibatch: int = _f(128, "Value network minibatch size.", min=1)
    vf_fused_adam: bool = _f(
        False,
        "Value network Adam through torch's fused kernel (the same update up to float "
        "rounding; faster for many small minibatches: ppo's preset turns it on).",
    )

    # Policy.
    hidden_sizes: list[int] = _f(
        [64], "Policy hidden layer sizes (tanh); [] is a linear policy.", item_min=1
    )
    log_std_init: float = _f(0.0, "Initial log standard deviation (Gaussian policies).")

    # Atari (trpo_bench.envs.atari): every preprocessing choice is a key, so summary.json holds it.
    atari_frame_skip: int = _f(
        4, "Atari: emulator frames per agent step (the action is repeated).", min=1
    )
    atari_frame_stack: int = _f(
        4, "Atari: 52 x 40 grayscale frames stacked into one observation.", min=1
    )
    atari_sticky_actions: float = _f(
        0.0,
        "Atari: probability the emulator repeats the previous action (ALE v5: 0.25; the 2015 "
        "paper had none, so 0 here).",
        min=0.0,
        max=1.0,
    )
    atari_frame_offset: float = _f(
        0.0,
        "Atari: subtracted from the [0, 1] frames inside the policy's and the value's networks "
        "(87/255 = 0.341 makes Pong's background 0). The same function class (a shift of the "
        "first convolution's bias), another optimisation; 0, the paper's: none.",
        min=0.0,
        max=1.0,
    )
    batch_chunk: int = _f(
        65536,
        "States per pass when the surrogate, its gradient and the line search run over the "
        "batch: bounds memory, and small chunks run convolutions faster on a CPU (the Atari "
        "preset uses 512). Results depend on it only through float rounding.",
        min=1,
    )
    clip_rewards: bool = _f(
        False, "Train on sign(reward) (Atari); reported returns are always the raw score."
    )

    # Evaluation (trpo_bench.run.evaluation): the one yardstick every method is measured by.
    eval_every: int = _f(
        5,
        "Evaluate the policy every N iterations and after the last (0: after the last only): "
        "eval_episodes episodes on fixed seeds, deterministic and (gradient methods) sampled "
        "actions, not counted in env_steps.",
        min=0,
    )
    eval_episodes: int = _f(
        5, "Episodes per evaluation (one per env, the same fixed seeds for every run).", min=1
    )

    # Bookkeeping.
    torch_threads: int = _f(
        1,
        "torch intra-op threads for the policy, value net and update. Above 1 the update may "
        "round differently (a run is then reproducible for the same thread count on the same "
        "machine); 1 gives the same numbers whatever the machine's load.",
        min=1,
    )
    env_workers: int = _f(
        1,
        "Processes that step the run's envs (trpo_bench.envs.workers): 1 steps them in the "
        "run's own process; K > 1 splits them into K slices stepped in parallel. Changes the "
        "wall time only, never a number (capped at num_envs).",
        min=1,
    )
    device: str = _f(
        "cpu",
        "Where the policy, value net and update run: cpu, cuda (a GPU; the envs stay on the "
        "CPU) or auto (cuda when torch sees one, else cpu). Random draws are made on the CPU "
        "either way; CEM and CMA-ES always run on the CPU.",
        choices=("cpu", "cuda", "auto"),
    )
    checkpoint_every: int = _f(5, "Write a checkpoint every N iterations (0: never).", min=0)
    experiment: str = _f("trpo-bench", "MLflow experiment name.", nonempty=True)
    mlflow: bool = _f(True, "Log the run to MLflow.")
    run_name: str = _f(
        "", "MLflow run name; empty: {env}/{method}/seed{seed} (the workflow names sweep values)."
    )
    mlflow_uri: str = _f(
        "",
        "MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, else a sqlite "
        "store mlflow.db beside the run folder.",
    )

    # The values of the keys the run's method declares (ConfigKey), read as attributes.
    method_options: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})

    def __getattr__(self, name: str) -> Any:
        # Called only when the normal lookup fails: a key declared by the run's method.
        options = self.__dict__.get("method_options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} has no config key {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every key, the method's own keys flat beside the fields (as they are set)."""
        data = dataclasses.asdict(self)
        options = data.pop("method_options")
        return {**data, **options}


FIELDS: dict[str, dataclasses.Field] = {
    f.name: f for f in dataclasses.fields(TrainConfig) if not f.metadata.get("internal")
}


def field_doc(name: str) -> str:
    return FIELDS[name].metadata.get("doc", "")


def load_preset(name: str) -> dict[str, Any]:
    """Load one of the YAML files shipped in ``trpo_bench/presets``."""
    text = resources.files("trpo_bench").joinpath("presets", f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read a user config file; a missing or malformed file is a :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at "
            f"offset {e.start}); save it as UTF-8"
        ) from None
    except OSError as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of key: value, "
            f"got {type(data).__name__}"
        )
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML (``[32, 32]``, ``true``, ``1e-3``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"malformed --set {item!r}: expected key=value, e.g. delta=0.02")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"malformed --set {item!r}: the value is not valid YAML") from None
    return out


def _unknown_key_message(
    key: str, source: str, allowed: Iterable[str], foreign: Mapping[str, str] | None = None
) -> str:
    if foreign and key in foreign:
        return (
            f"config key {key!r} in {source} belongs to method {foreign[key]}, not this run's "
            "method (set it only for that method's runs)"
        )
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r} in {source}{hint} (allowed: {', '.join(allowed)})"


def _coerce(name: str, value: Any, ftype: Any) -> Any:
    """Convert ``value`` to the key's type ``ftype`` or raise a ConfigError naming both."""
    origin = typing.get_origin(ftype)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key {name!r}: {value!r} is not {expected}")

    if ftype is bool:
        if isinstance(value, bool):
            return value
        raise bad("a boolean (true/false)")
    if ftype is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float | str):
            try:
                as_float = float(value)
            except ValueError:
                raise bad("an integer") from None
            if math.isfinite(as_float) and as_float == int(as_float):
                return int(as_float)
        raise bad("an integer")
    if ftype is float:
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        raise bad("a number")
    if ftype is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise bad("a list of integers, e.g. [64, 64]")
        items = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad("a list of integers, e.g. [64, 64]")
            items.append(v)
        return items
    raise AssertionError(f"unhandled field type {ftype} for {name}")  # pragma: no cover


def _check_range(name: str, value: Any, shown: Any, meta: Mapping[str, Any]) -> None:
    """Check ``value`` against the key's limits ``meta`` (a field's metadata or a ConfigKey's
    checks); messages show the user's ``shown`` value."""

    def fail(allowed: str) -> None:
        raise ConfigError(f"config key {name!r}: {shown!r} is out of range (allowed: {allowed})")

    if isinstance(value, float) and not math.isfinite(value):
        fail("a finite number")
    if "min" in meta and value < meta["min"]:
        fail(f">= {meta['min']}")
    if "max" in meta and value > meta["max"]:
        fail(f"<= {meta['max']}")
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        fail(f"> {meta['min_exclusive']}")
    if "max_exclusive" in meta and value >= meta["max_exclusive"]:
        fail(f"< {meta['max_exclusive']}")
    if "choices" in meta and value not in meta["choices"]:
        fail(", ".join(meta["choices"]))
    if meta.get("nonempty") and not value:
        fail("a non-empty string")
    if "item_min" in meta and any(v < meta["item_min"] for v in value):
        fail(f"every item >= {meta['item_min']}")


_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)


def apply_layer(
    values: dict[str, Any],
    layer: Mapping[str, Any],
    source: str,
    method_keys: Mapping[str, ConfigKey] | None = None,
    foreign: Mapping[str, str] | None = None,
) -> None:
    """Merge one layer into ``values``, coercing and range-checking every key it sets.

    ``method_keys`` are the keys the run's method declares (allowed beside the fields);
    ``foreign`` maps the keys other methods declare to their names (for the message)."""
    method_keys = method_keys or {}
    for key, raw in layer.items():
        if key in FIELDS:
            ftype, meta = _FIELD_TYPES[key], FIELDS[key].metadata
        elif key in method_keys:
            ftype, meta = method_keys[key].type, method_keys[key].checks
        else:
            raise ConfigError(
                _unknown_key_message(str(key), source, [*FIELDS, *method_keys], foreign)
            )
        value = _coerce(key, raw, ftype)
        _check_range(key, value, raw, meta)
        values[key] = value
