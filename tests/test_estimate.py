"""The grid's time estimate (trpo_bench.analysis.estimate): measured rates in, CPU-hours and wall
out."""

import subprocess
import sys

import pytest

from trpo_bench.analysis.estimate import (
    Rates,
    RunWork,
    estimate_grid,
    evaluations,
    load_rates,
    schedule_wall_s,
    summary_lines,
)
from trpo_bench.grid import expand_grid

# Two envs of one family, one method each, one seed: every figure below is worked out by hand.
GRID = {
    "envs": ["Hopper-v5", "Walker2d-v5"],
    "methods": ["trpo-single-path"],
    "seeds": [0],
    "preset": "quick",
    "experiment": "x",
    "resources": {"mujoco": {"threads": 1, "mem_mb": 1000, "runtime": 10}},
}
RATES = Rates(
    fixed_cost_s=5.0,
    envs={"Hopper-v5": {"trpo-single-path": 100.0}},
    families={"mujoco": {"default": 50.0}},
)
FAMILIES = {"Hopper-v5": "mujoco", "Walker2d-v5": "mujoco"}
BUDGETS = {"Hopper-v5": 10 * 26_950, "Walker2d-v5": 10 * 6_975}  # iterations x steps_per_iter


def estimate(cfg=GRID, rates=RATES, evals=0):
    return estimate_grid(
        cfg,
        expand_grid(cfg),
        rates,
        budget=lambda run: RunWork(BUDGETS[run.env], evals),
        families=FAMILIES,
    )


def test_a_job_costs_its_steps_over_its_rate_plus_the_fixed_cost():
    est = estimate()
    hopper, walker = est.jobs
    assert hopper.rate == 100.0 and walker.rate == 50.0  # Walker2d: the family's default
    assert hopper.cpu_s == pytest.approx(269_500 / 100 + 5)  # 2,700 s
    assert walker.cpu_s == pytest.approx(69_750 / 50 + 5)  # 1,400 s
    assert est.cpu_s == pytest.approx(4_100)
    assert est.longest_s == pytest.approx(2_700)
    assert est.wall_s(1) == pytest.approx(4_100)
    assert est.wall_s(2) == pytest.approx(2_700)  # at least the longest job


def test_the_printed_lines_give_the_numbers():
    (line,) = summary_lines(estimate(), 2, default_grid=True)
    assert "2 training jobs" in line
    assert "1.1 CPU-hours" in line  # 4,100 s
    assert "the longest job 45 min" in line  # 2,700 s
    assert "wall time on 2 cores: about 45 min" in line
    (line,) = summary_lines(estimate(), 1, default_grid=True)
    assert "on 1 core: about 68 min" in line


def test_a_long_grid_says_it_is_the_full_comparison_and_names_the_quick_look():
    long = {**GRID, "seeds": list(range(8))}  # 8 x 4,100 s = 9.1 h on one core
    lines = summary_lines(estimate(long), 1, default_grid=True)
    assert "9.1 CPU-hours" in lines[0] and "about 9.1 h" in lines[0]
    assert "This is the full comparison" in lines[1]
    assert "snakemake --cores all --configfile config/quick.yaml" in lines[1]
    lines = summary_lines(estimate(long), 1, default_grid=False)
    assert "full comparison" not in lines[1] and "config/quick.yaml" in lines[1]
    # the same grid on a cluster, 16 jobs at once: the longest job bounds it
    (line,) = summary_lines(estimate(long), 1, jobs_at_once=16, default_grid=False)
    assert "with 16 jobs at once: about 45 min" in line


def test_each_evaluation_adds_the_envs_measured_cost_else_its_familys():
    rates = Rates(5.0, RATES.envs, RATES.families, {"Hopper-v5": 30.0, "mujoco": 12.0})
    hopper, walker = estimate(rates=rates, evals=3).jobs
    assert hopper.cpu_s == pytest.approx(269_500 / 100 + 3 * 30.0 + 5)
    assert walker.cpu_s == pytest.approx(69_750 / 50 + 3 * 12.0 + 5)  # the family's figure
    assert RATES.evaluation("Hopper-v5", "mujoco") == 0.0  # none measured: none counted
    # every eval_every iterations and after the last (trpo_bench.run.evaluation.is_due)
    assert [evaluations(n, 5) for n in (1, 5, 6, 500)] == [1, 1, 2, 100]
    assert evaluations(7, 0) == 1


def test_rates_fall_back_from_the_pair_to_the_family_method_to_the_family_default():
    rates = Rates(1.0, {"A": {"m": 10.0}}, {"f": {"m": 20.0, "default": 30.0}})
    assert rates.rate("A", "m", "f") == 10.0
    assert rates.rate("B", "m", "f") == 20.0
    assert rates.rate("B", "n", "f") == 30.0
    with pytest.raises(KeyError, match="no rate"):
        rates.rate("B", "n", "g")


def test_env_workers_divide_the_env_share_of_training_not_evaluation_nor_start():
    # Hopper on 4 threads (4 env workers of its 8 envs), 80% of its training in the envs;
    # Walker2d on 4 threads but with 2 envs: 2 workers.
    cfg = {**GRID, "resources": {"mujoco": {"threads": 4, "mem_mb": 1000, "runtime": 10}}}
    rates = Rates(5.0, RATES.envs, RATES.families, {"mujoco": 10.0}, {"mujoco": {"default": 0.8}})
    envs = {"Hopper-v5": 8, "Walker2d-v5": 2}
    est = estimate_grid(
        cfg,
        expand_grid(cfg),
        rates,
        budget=lambda run: RunWork(BUDGETS[run.env], 2, envs[run.env]),
        families=FAMILIES,
    )
    hopper, walker = est.jobs
    assert hopper.cpu_s == pytest.approx(2_695 + 20 + 5)  # CPU: as on one thread
    assert hopper.wall_s == pytest.approx(2_695 * (0.2 + 0.8 / 4) + 20 + 5)  # 1,103 s
    assert walker.wall_s == pytest.approx(1_395 * (0.2 + 0.8 / 2) + 20 + 5)  # 862 s
    assert est.longest_s == pytest.approx(1_103)
    assert est.wall_s(8) == pytest.approx(1_103)  # both at once, 4 cores each
    assert est.wall_s(4) == pytest.approx(1_103 + 862)  # one after the other
    assert RATES.share("trpo-single-path", "mujoco") == 0.0  # none measured: no speed-up


def test_the_train_rules_priority_is_the_jobs_estimated_wall_seconds():
    from trpo_bench.analysis.estimate import job_priorities

    runs = expand_grid(GRID)
    est, priority = estimate_grid(GRID, runs), job_priorities(GRID, runs)
    assert [priority[r] for r in runs] == [round(j.wall_s) for j in est.jobs]
    assert len(set(priority.values())) == 2 and min(priority.values()) > 0
    assert job_priorities({**GRID, "preset": "nonsense"}, runs) == {}  # no estimate: no order


def test_longest_first_schedule_holds_a_jobs_threads():
    assert schedule_wall_s([(10, 1), (6, 1), (4, 1)], 2) == 10
    assert schedule_wall_s([(10, 2), (6, 1), (4, 1)], 2) == 16
    assert schedule_wall_s([], 4) == 0


def test_shipped_rates_cover_every_env_family_and_the_estimate_resolves_real_budgets():
    from trpo_bench.envs.registry import ENV_SPECS

    rates = load_rates()
    assert 4 < rates.fixed_cost_s < 10
    for spec in ENV_SPECS.values():
        assert "default" in rates.families[spec.family], spec.family
    # The real budget: the quick preset's Hopper (iterations x steps_per_iter of build_config),
    # and its evaluations (eval_every 2: after iterations 2 and 3) at the shipped figure.
    over = {"iterations": 3, "steps_per_iter": 1000, "eval_every": 2}
    cfg = {**GRID, "overrides": [{"set": over}]}
    est = estimate_grid(cfg, expand_grid(cfg), rates)
    assert [j.env_steps for j in est.jobs] == [3000, 3000]
    hopper = est.jobs[0]
    expected = 3000 / hopper.rate + 2 * rates.evaluation("Hopper-v5", "mujoco")
    assert hopper.cpu_s == pytest.approx(expected + rates.fixed_cost_s)
    assert rates.evaluation("Hopper-v5", "mujoco") > 0


def test_importing_the_estimate_does_not_import_torch():
    code = "import sys, trpo_bench.analysis.estimate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
