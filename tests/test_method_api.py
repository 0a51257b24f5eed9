"""The public method API (trpo_bench.api): what reaches progress.csv, natural_direction's one
return type, the typed batch, and a registration's checks."""

from dataclasses import dataclass

import pytest

from trpo_bench.api import Batch, Method, StepStats
from trpo_bench.config import ConfigKey
from trpo_bench.methods.registry import METHODS
from trpo_bench.methods.steps import Direction, natural_direction
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner
from trpo_bench.run.trainer import iteration_generator
from trpo_bench.sampling.single_path import sample_single_path


def test_step_stats_columns_come_from_the_fields_in_order():
    stats = StepStats(surrogate_before=1.0, surrogate_after=1.5, reject_reason="r")
    stats.extra = {"x": 2.0}
    columns = stats.progress_columns(between={"entropy": 0.3})
    assert list(columns) == [
        "surrogate_before",
        "surrogate_after",
        "surrogate_gain",
        "expected_gain",
        "kl_mean",
        "kl_max",
        "linesearch_steps",
        "step_accepted",
        "step_fraction",
        "grad_norm",
        "entropy",
        "x",
        "reject_reason",
    ]
    assert columns["surrogate_gain"] == 0.5 and columns["reject_reason"] == "r"


def test_a_new_step_stats_field_reaches_the_columns_unlisted():
    @dataclass
    class MoreStats(StepStats):
        trust_radius: float = 0.25

    columns = MoreStats().progress_columns()
    assert columns["trust_radius"] == 0.25
    assert list(columns)[-2:] == ["trust_radius", "reject_reason"]


def test_natural_direction_returns_one_type_usable_or_not():
    cfg = build_config(
        "CartPole-v1", "trpo-single-path", layers=[("t", {"steps_per_iter": 200, "mlflow": False})]
    )
    learner = build_learner(cfg)
    try:
        gen = iteration_generator(cfg.seed, 0)
        batch = sample_single_path(learner.envs, learner.policy, cfg, 0, None, gen)
    finally:
        learner.envs.close()
    assert isinstance(batch, Batch)
    assert batch.actions.shape[0] == batch.advantages.shape[0] == batch.env_steps == 200
    assert batch.old_dist is batch.objective.old_dist
    found = natural_direction(learner.policy, batch.objective, cfg, gen)
    assert isinstance(found, Direction) and found.usable
    assert found.s.shape == found.g.shape and float(found.g.dot(found.s)) > 0  # s = A^-1 g
    batch.objective.advantages.zero_()  # a zero gradient: not usable, still a Direction
    empty = natural_direction(learner.policy, batch.objective, cfg, gen)
    assert isinstance(empty, Direction) and not empty.usable
    assert empty.stats.reject_reason == "zero gradient" and empty.s is None


def test_a_registration_needs_a_sampler_and_step_rule_or_a_loop():
    with pytest.raises(TypeError, match="give a sampler and a step_rule, or a run loop"):
        Method("half", "no step rule", sampler=sample_single_path)
    with pytest.raises(TypeError, match="config key 'k': unknown checks"):
        ConfigKey("k", 1, "doc", {"minimum": 0})
    with pytest.raises(TypeError, match="is not a bool, int, float, str or list of ints"):
        ConfigKey("k", None, "doc")


def test_the_registry_and_the_config_read_the_same_registration():
    for method in METHODS.values():
        assert method.origin == "built-in"
        cfg = build_config("CartPole-v1", method.name)
        on_env = (method.env_presets.get("CartPole-v1") or {}).get("defaults") or {}
        for key, value in {**method.defaults, **on_env}.items():
            assert cfg.to_dict()[key] == value, (method.name, key)
        for key in method.config_keys:
            assert getattr(cfg, key.name) == key.default
