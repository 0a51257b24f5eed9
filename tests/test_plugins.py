"""Plug-in methods (issue 16): an out-of-tree package registers a method through the entry-point
group ``trpo_bench.methods`` and runs through the CLI, the workflow's dry run, the tables, MLflow
and resume like a built-in; a broken plug-in is one warning line and breaks nothing.

The package is built and installed with pip (``--target`` a temporary folder, put on
PYTHONPATH for the subprocesses): the real path a user takes, without touching the shared
environment that other tests run in at the same time.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from demo_package import install, site_env

from trpo_bench.analysis.tables import load_runs, summarize
from trpo_bench.methods.registry import ENTRY_POINT_GROUP, builtin_methods, plugin_methods

ROOT = Path(__file__).resolve().parents[1]
DIST = "trpo-bench-demo-methods"

# A step rule written against the public API only (trpo_bench.api, trpo_bench.methods.steps'
# helpers).
MODULE = '''
"""Random search in parameter space: keep the best of a few Gaussian perturbations."""
import torch

from trpo_bench.api import ConfigKey, Method, Objective, StepStats
from trpo_bench.sampling.single_path import sample_single_path
from trpo_bench.methods.steps import apply_step, guard_step, restore, snapshot


def random_search_step(policy, objective: Objective, cfg, generator) -> StepStats:
    theta_old = snapshot(policy)
    before, _ = objective.evaluate(policy)
    best, best_step = before, None
    for _ in range(cfg.rs_trials):
        step = cfg.rs_sigma * torch.randn(theta_old.shape, generator=generator)
        apply_step(policy, step)
        value, _ = objective.evaluate(policy)
        restore(policy, theta_old)
        if value > best:
            best, best_step = value, step
    stats = StepStats(surrogate_before=before, extra={"rs_improvement": best - before})
    if best_step is not None:
        apply_step(policy, best_step)
        stats.step_accepted, stats.step_fraction = True, 1.0
    stats.surrogate_after, kl = objective.evaluate(policy)
    stats.kl_mean, stats.kl_max = float(kl.mean()), float(kl.max())
    return guard_step(stats, policy, objective, theta_old)


METHOD = Method(
    "random-search",
    "random search: the best of rs_trials Gaussian perturbations of the weights",
    sampler=sample_single_path,
    step_rule=random_search_step,
    config_keys=(
        ConfigKey("rs_trials", 8, "Perturbations tried per iteration.", {"min": 1}),
        ConfigKey("rs_sigma", 0.05, "Std of each perturbation.", {"min_exclusive": 0.0}),
    ),
    defaults={"baseline": "none"},
)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The demo package, built and installed by pip into a folder of its own."""
    entry_points = {
        ENTRY_POINT_GROUP: {
            "random-search": "trpo_demo_methods:METHOD",
            "broken-method": "trpo_demo_methods:NOT_THERE",
        }
    }
    site = install(
        tmp_path_factory.mktemp("plugin"), DIST, "trpo_demo_methods", MODULE, entry_points
    )
    assert list(site.glob("trpo_bench_demo_methods-0.1.0.dist-info/entry_points.txt"))
    return site


def _env(site: Path) -> dict[str, str]:
    return site_env(site)


def _cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trpo_bench", *args],
        cwd=cwd,
        env=_env(site),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plugins_are_found_named_and_a_broken_one_is_one_warning(plugin_site, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(plugin_site))
    found = plugin_methods(builtin_methods())
    assert list(found) == ["random-search"]
    assert found["random-search"].origin == DIST
    assert [k.name for k in found["random-search"].config_keys] == ["rs_trials", "rs_sigma"]
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1
    assert "plug-in method 'broken-method'" in warning[0]
    assert f"from {DIST} 0.1.0" in warning[0] and "left out" in warning[0]
    # A plug-in may not take a built-in's name.
    assert plugin_methods([*builtin_methods(), "random-search"]) == {}
    assert "already registered" in capsys.readouterr().err


def test_trpo_bench_methods_lists_plugins_with_their_origin(plugin_site, tmp_path):
    result = _cli(plugin_site, "methods", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("random-search") and f"[{DIST}]" in line for line in lines)
    assert sum("[built-in]" in line for line in lines) == len(builtin_methods())
    assert result.stderr.count("warning:") == 1 and "'broken-method'" in result.stderr
    shown = _cli(plugin_site, "train", "--help", cwd=tmp_path).stdout
    assert f"method random-search's own keys ({DIST}):" in shown
    assert "rs_trials (default 8; min 1): Perturbations tried per iteration." in shown


def test_a_plugin_method_trains_resumes_and_reaches_tables_and_mlflow(plugin_site, tmp_path):
    out, store = tmp_path / "run", tmp_path / "mlflow.db"
    common = ["train", "--env", "CartPole-v1", "--method", "random-search", "--out", str(out)]
    sets = [
        "--steps-per-iter",
        "200",
        "--set",
        "rs_trials=3",
        "--set",
        "eval_every=0",
        "--set",
        "eval_episodes=1",
        "--set",
        "checkpoint_every=1",
        "--set",
        f"mlflow_uri=sqlite:///{store}",
    ]
    first = _cli(plugin_site, *common, "--iterations", "2", *sets, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # A value out of the plug-in's declared range is a user error naming it.
    bad = _cli(plugin_site, *common, "--iterations", "2", "--set", "rs_trials=0", cwd=tmp_path)
    assert bad.returncode == 2
    assert "config key 'rs_trials': 0 is out of range (allowed: >= 1)" in bad.stderr
    # Extended by one iteration: resumed from the checkpoint, not retrained.
    second = _cli(plugin_site, *common, "--iterations", "3", *sets, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resum" in second.stdout.lower()
    progress = pd.read_csv(out / "progress.csv")
    assert list(progress["iteration"]) == [0, 1, 2]
    assert list(progress["env_steps"]) == [200, 400, 600]
    assert "rs_improvement" in progress.columns  # its StepStats.extra, unlisted anywhere
    assert (progress["rs_improvement"] >= 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["config"]["rs_trials"] == 3 and summary["config"]["rs_sigma"] == 0.05
    # The comparison table reads it like any run.
    planned = [
        {
            "env": "CartPole-v1",
            "method": "random-search",
            "variant": "random-search",
            "seed": 0,
            "sweep": {},
            "folder": str(out),
        }
    ]
    runs, _ = load_runs(planned)
    table = summarize(runs, samples=100)
    assert table.loc[0, "method"] == "random-search" and table.loc[0, "seeds_done"] == 1
    # MLflow holds one run with the plug-in's keys as params.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store}")
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(found) == 1
    assert found[0].data.params["rs_trials"] == "3"
    assert found[0].data.tags["method"] == "random-search"


def test_the_workflow_dry_run_plans_plugin_runs(plugin_site, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "envs": ["CartPole-v1"],
                "methods": ["trpo-single-path", "random-search"],
                "overrides": [
                    {"set": {"iterations": 2, "steps_per_iter": 200}},
                    {"method": "random-search", "set": {"rs_trials": 4}},
                ],
                "sweeps": [{"method": "random-search", "key": "rs_sigma", "values": [0.01, 0.1]}],
            }
        )
    )
    args = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path / "work"),
        "-n",
        "--configfile",
        "config/smoke.yaml",
        str(grid),
    ]
    result = subprocess.run(
        args, cwd=ROOT, env=_env(plugin_site), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr + result.stdout
    planned = set(
        __import__("re").findall(r"wildcards: env=(\S+), variant=(\S+), seed=(\d+)", result.stdout)
    )
    assert planned == {
        ("CartPole-v1", "trpo-single-path", "0"),
        ("CartPole-v1", "random-search@rs_sigma=0.01", "0"),
        ("CartPole-v1", "random-search@rs_sigma=0.1", "0"),
    }
    # A plug-in key set for a method that does not declare it is refused before any job.
    grid.write_text(yaml.safe_dump({"overrides": [{"set": {"rs_trials": 4}}]}))
    bad = subprocess.run(
        args, cwd=ROOT, env=_env(plugin_site), capture_output=True, text=True, timeout=300
    )
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "config key 'rs_trials'" in said and "belongs to method random-search" in said, said
