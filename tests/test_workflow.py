"""The Snakemake workflow: the grid, the planned DAG, bad configs, and the smoke grid end to end
(through a single-node SLURM cluster where one can be started here, else locally)."""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from trpo_bench.config import ConfigError, parse_overrides
from trpo_bench.grid import (
    expand_grid,
    grid_problems,
    resources_for,
    tracking_uri,
    train_argv,
    variant_name,
)

ROOT = Path(__file__).resolve().parents[1]
LIGHT_RULES = [
    "mlflow_store",
    "aggregate",
    "claims",
    "plots",
    "overview",
    "mlflow_summary",
    "all",
]


def grid_config(*names: str) -> dict:
    """config/config.yaml (the full comparison) with config/<name>.yaml read on top, as
    Snakemake merges them (no name: the full comparison itself)."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for name in names:
        update_config(cfg, yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text()))
    return cfg


def planned_train_jobs(cfg: dict) -> set[tuple[str, str, int]]:
    """(env, variant, seed) of every train job the config asks for, worked out here from the
    config's own words: env x method x sweep values x seed, minus the excluded pairs."""

    def names(value, default):  # an entry's env or method: absent, one name, or a list
        value = default if value is None else value
        return [value] if isinstance(value, str) else value

    jobs = set()
    for env, method in itertools.product(cfg["envs"], cfg["methods"]):
        if any(
            env in names(e.get("env"), env) and method in names(e.get("method"), method)
            for e in cfg.get("exclude", [])
        ):
            continue
        axes = [(s["key"], s["values"]) for s in cfg.get("sweeps", []) if s["method"] == method]
        for values in itertools.product(*(v for _, v in axes)):
            suffix = ",".join(f"{k}={v:g}" for (k, _), v in zip(axes, values, strict=True))
            variant = f"{method}@{suffix}" if suffix else method
            jobs.update((env, variant, seed) for seed in cfg["seeds"])
    return jobs


def snakemake(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None):
    env = {k: v for k, v in (env or os.environ).items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(cwd),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# --- the grid (pure functions) ----------------------------------------------------------------


GRID = {
    "envs": ["CartPole-v1", "Hopper-v5"],
    "methods": ["trpo-single-path", "natural-gradient"],
    "seeds": [0, 3],
    "preset": "quick",
    "experiment": "x",
    "exclude": [{"env": "Hopper-v5", "method": "trpo-single-path"}],
    "overrides": [
        {"set": {"iterations": 2}},
        {"env": "Hopper-v5", "set": {"iterations": 4, "hidden_sizes": [8, 8]}},
        {"method": "natural-gradient", "set": {"delta": 0.02}},
    ],
    "sweeps": [{"method": "natural-gradient", "key": "step_size", "values": [0.1, 0.3]}],
    "resources": {
        "classic": {"threads": 1, "mem_mb": 500, "runtime": 5},
        "mujoco": {"threads": 2, "mem_mb": 900, "runtime": 30},
        "Hopper-v5": {"threads": 3, "mem_mb": 4000, "runtime": 90, "gpu": 1},
    },
}


def test_expand_grid_applies_exclusions_overrides_and_sweeps():
    runs = expand_grid(GRID)
    assert [(r.env, r.variant, r.seed) for r in runs] == [
        ("CartPole-v1", "trpo-single-path", 0),
        ("CartPole-v1", "trpo-single-path", 3),
        ("CartPole-v1", "natural-gradient@step_size=0.1", 0),
        ("CartPole-v1", "natural-gradient@step_size=0.1", 3),
        ("CartPole-v1", "natural-gradient@step_size=0.3", 0),
        ("CartPole-v1", "natural-gradient@step_size=0.3", 3),
        ("Hopper-v5", "natural-gradient@step_size=0.1", 0),
        ("Hopper-v5", "natural-gradient@step_size=0.1", 3),
        ("Hopper-v5", "natural-gradient@step_size=0.3", 0),
        ("Hopper-v5", "natural-gradient@step_size=0.3", 3),
    ]
    hopper = dict(runs[-1].settings)
    assert hopper == {"iterations": 4, "hidden_sizes": [8, 8], "delta": 0.02, "step_size": 0.3}
    assert dict(runs[0].settings) == {"iterations": 2}
    assert runs[-1].folder == "runs/Hopper-v5/natural-gradient@step_size=0.3/seed3"
    assert planned_train_jobs(GRID) == {(r.env, r.variant, r.seed) for r in runs}
    assert variant_name("m", [("a", 1e-3), ("b", True)]) == "m@a=0.001,b=true"


def test_a_grid_value_reads_back_unchanged_on_the_command_line():
    from trpo_bench.grid import _yaml_scalar

    values = [7, -2, True, False, 0.3, 1e-5, 3.0, float("inf"), None, [64, 64], [], "yes", "a b"]
    for value in values * 2:  # the second time from the dump cache
        assert parse_overrides([f"k={_yaml_scalar(value)}"]) == {"k": value}, value
    assert _yaml_scalar(True) == "true" and _yaml_scalar("yes") == "'yes'"


def test_train_argv_round_trips_through_the_cli_parser():
    run = expand_grid(GRID)[-1]
    argv = train_argv(run, GRID, "out/dir", "sqlite:////tmp/m.db", threads=3)
    assert argv[:10] == [
        "train",
        "--env",
        "Hopper-v5",
        "--method",
        "natural-gradient",
        "--seed",
        "3",
        "--out",
        "out/dir",
        "--preset",
    ]
    sets = parse_overrides(a for i, a in enumerate(argv) if i and argv[i - 1] == "--set")
    assert sets == {
        "iterations": 4,
        "hidden_sizes": [8, 8],
        "delta": 0.02,
        "step_size": 0.3,
        "experiment": "x",
        "mlflow_uri": "sqlite:////tmp/m.db",
        "env_workers": 3,
        "run_name": "Hopper-v5/natural-gradient@step_size=0.3/seed3",
    }


def test_resources_per_env_family_and_env(monkeypatch, tmp_path):
    no_gpu = {"gpu": 0}  # unless the entry asks for GPUs (the SLURM plugin's gpu resource)
    assert resources_for(GRID, "CartPole-v1") == {
        "threads": 1,
        "mem_mb": 500,
        "runtime": 5,
        **no_gpu,
    }
    assert resources_for(GRID, "Swimmer-v5") == {
        "threads": 2,
        "mem_mb": 900,
        "runtime": 30,
        **no_gpu,
    }
    assert resources_for(GRID, "Hopper-v5") == {
        "threads": 3,
        "mem_mb": 4000,
        "runtime": 90,
        "gpu": 1,
    }
    assert tracking_uri({"mlflow_uri": "http://h:5000"}, tmp_path) == "http://h:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking_uri({"mlflow_uri": ""}, tmp_path) == "http://env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri({}, tmp_path / "r") == f"sqlite:///{tmp_path}/r/mlflow.db"


def test_grid_problems_name_the_bad_value_and_the_allowed_ones():
    families = {"CartPole-v1": "classic", "Hopper-v5": "mujoco"}
    methods = ["trpo-single-path", "natural-gradient"]
    assert grid_problems(GRID, families, methods) == []
    bad = {
        **GRID,
        "envs": ["CartPole-v1", "Hoper-v5"],
        "methods": ["trpo-single-path", "cem"],
        "overrides": [{"method": "natural-gradient", "set": {"itertions": 3, "seed": 1}}],
        "sweeps": [{"method": "natural-gradient", "key": "stepsize", "values": [1]}],
        "resources": {"classic": GRID["resources"]["classic"]},
    }
    problems = grid_problems(bad, families, methods)
    assert problems[0] == (
        "unknown env 'Hoper-v5' in envs; did you mean 'Hopper-v5'? "
        "(allowed: CartPole-v1, Hopper-v5)"
    )
    assert problems[1] == (
        "unknown method 'cem' in methods (allowed: trpo-single-path, natural-gradient)"
    )
    assert problems[2].startswith(
        "unknown config key 'itertions' in overrides[0]; did you mean 'iterations'?"
    )
    assert problems[3] == "overrides[0] sets 'seed', which the workflow sets itself"
    assert problems[4].startswith(
        "unknown config key 'stepsize' in sweeps[0]; did you mean 'step_size'?"
    )
    assert len(problems) == 5  # Hopper-v5 is not in envs here, so its missing resources are fine
    listed = {**GRID, "exclude": [{"env": ["Hopper-v5", "Pong"], "method": ["x", "vpg"]}]}
    assert grid_problems(listed, families, methods) == [
        "unknown env 'Pong' in exclude[0] (allowed: CartPole-v1, Hopper-v5)",
        "unknown method 'x' in exclude[0] (allowed: trpo-single-path, natural-gradient)",
        "unknown method 'vpg' in exclude[0] (allowed: trpo-single-path, natural-gradient)",
    ]
    everything_excluded = {**GRID, "exclude": [{"env": "CartPole-v1"}, {"env": "Hopper-v5"}]}
    assert grid_problems(everything_excluded, families, methods) == [
        "the grid is empty: every (env, method) pair is excluded"
    ]


def test_every_method_and_env_of_the_registries_can_join_a_grid_by_config():
    from trpo_bench.envs.registry import ENV_SPECS
    from trpo_bench.grid import check_runs
    from trpo_bench.methods.registry import METHODS

    cfg = {
        **GRID,
        "envs": ["CartPole-v1"],
        "methods": list(METHODS),
        "sweeps": [],
        "resources": {
            f: GRID["resources"]["mujoco"] for f in {e.family for e in ENV_SPECS.values()}
        },
    }
    assert grid_problems(cfg) == []
    check_runs(cfg, expand_grid(cfg))  # every method resolves a valid training config
    with pytest.raises(ConfigError, match=r"run CartPole-v1/trpo-single-path: .*'delta'"):
        bad = {**cfg, "overrides": [{"set": {"delta": -1}}]}
        check_runs(bad, expand_grid(bad))


# --- the planned DAG and bad configs ------------------------------------------------------------


@pytest.mark.parametrize("grid", ["full", "quick", "modern"])
def test_grid_plans_one_train_job_per_env_method_sweep_value_and_seed(grid, tmp_path):
    overlays = [] if grid == "full" else [grid]  # plain `snakemake` runs the full comparison
    configfiles = [arg for name in overlays for arg in ("--configfile", f"config/{name}.yaml")]
    result = snakemake("-n", *configfiles, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    planned = {
        (env, variant, int(seed))
        for env, variant, seed in re.findall(
            r"wildcards: env=([^,\s]+), variant=([^,\s]+(?:,[a-z_]+=[^,\s]+)*), seed=(\d+)", out
        )
    }
    expected = planned_train_jobs(grid_config(*overlays))
    assert planned == expected
    # Before the plan, the estimate from measured rates (trpo_bench.analysis.estimate); on one core
    # (a dry run's default) the full comparison takes months and says so.
    assert f"trpo-bench: {len(expected)} training jobs, estimated " in result.stderr
    assert ("This is the full comparison" in result.stderr) == (grid == "full")
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M))
    assert int(stats["train"]) == len(expected)
    assert {rule: int(stats[rule]) for rule in LIGHT_RULES} == dict.fromkeys(LIGHT_RULES, 1)
    assert int(stats["total"]) == len(expected) + len(LIGHT_RULES)
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


@pytest.mark.parametrize("name", ["quick", "smoke", "modern"])
def test_a_grid_read_on_top_of_the_full_one_inherits_none_of_its_resources(name):
    """Snakemake merges `resources` key by key: an overlay restates every entry of
    config/config.yaml, or its jobs would get the full grid's (30-hour hopper and walker
    limits, 16 GB Atari jobs)."""
    full = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["resources"]
    overlay = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())["resources"]
    assert set(full) <= set(overlay)
    if name == "quick":
        assert resources_for(grid_config("quick"), "Hopper-v5") == {
            "threads": 1,
            "mem_mb": 2000,
            "runtime": 60,
            "gpu": 0,
        }


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        (
            {"envs": ["CartPole-v1", "Foo-v9"]},
            "config error: envs: unknown env 'Foo-v9': gymnasium cannot make it",
        ),
        ({"seeds": [0, -1]}, "config error: key 'seeds[1]': -1 is less than the minimum of 0"),
        ({"seed": [0]}, "config error: unknown key 'seed' (did you mean 'seeds'?)"),
        (
            {"overrides": [{"set": {"itertions": 3}}]},
            "config error: unknown config key 'itertions' in overrides[0]; "
            "did you mean 'iterations'?",
        ),
        (
            {"results": "results/a\nb"},
            "config error: key 'results': 'results/a\\nb': a path holds no control characters",
        ),
    ],
    ids=["unknown-env", "negative-seed", "misspelt-key", "misspelt-train-key", "control-char"],
)
def test_bad_config_fails_with_one_clear_message_and_runs_nothing(tmp_path, overlay, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    result = snakemake(
        "--cores",
        "1",
        "--configfile",
        "config/smoke.yaml",
        str(bad),
        cwd=tmp_path / "work",
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "work" / "results").exists()


# Shell characters in every free-text value a grid hands to a job (issue 23): the results
# folder (in every path, the log's included), the MLflow experiment (a --set value) and so the
# store's URI. Each would create a PWNED file if it reached a shell unquoted.
ODD = {
    "results": "results/odd $(touch PWNED1) `touch PWNED2`; touch PWNED3 #'\"",
    "experiment": "exp $(touch PWNED4); touch PWNED5 #",
    "envs": ["CartPole-v1"],
    "methods": ["trpo-single-path"],
    "seeds": [0],
    "sweeps": [],
    "overrides": [{"set": {"iterations": 2, "steps_per_iter": 400, "num_envs": 1}}],
}


def test_shell_characters_in_grid_values_run_nothing(tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump(ODD))
    work = tmp_path / "work"
    args = ("--cores", "2", "--configfile", "config/smoke.yaml", str(odd))
    dry = snakemake("-n", "-p", *args, cwd=work, timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert "> 'results/odd $(touch PWNED1)" in dry.stdout + dry.stderr  # the log path, quoted
    assert not list(tmp_path.rglob("PWNED*"))
    real = snakemake(*args, cwd=work, timeout=300)  # the whole DAG: train, tables, MLflow
    assert real.returncode == 0, real.stderr
    assert not list(tmp_path.rglob("PWNED*")) and not list(ROOT.glob("PWNED*"))
    run = work / ODD["results"] / "runs" / "CartPole-v1" / "trpo-single-path" / "seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["config"]["experiment"] == ODD["experiment"]
    assert (work / ODD["results"] / "overview.html").is_file()


# --- the smoke grid end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, slurm_cluster):
    """config/smoke.yaml run once: through the SLURM profile where a cluster could be started
    here, else locally (default profile, 2 cores)."""
    work = tmp_path_factory.mktemp("smoke")
    slurm_env, why_not = slurm_cluster
    if slurm_env is not None:
        args = [
            "--workflow-profile",
            str(ROOT / "workflow/profiles/slurm"),
            # no accounting database here: sacct cannot answer, squeue can (MinJobAge 400 s)
            "--slurm-status-command",
            "squeue",
            "--slurm-no-account",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--latency-wait",
            "5",
        ]
        env = {**os.environ, **slurm_env}
    else:
        args, env = ["--cores", "2"], None
    result = snakemake(*args, "--configfile", "config/smoke.yaml", cwd=work, env=env)
    (work / "snakemake.out").write_text(result.stdout + result.stderr)
    return {"dir": work, "result": result, "slurm": slurm_env is not None, "why_not": why_not}


def test_smoke_grid_end_to_end(smoke):
    result = smoke["result"]
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    cfg = grid_config("smoke")
    res = smoke["dir"] / cfg["results"]
    jobs = planned_train_jobs(cfg)
    runs = pd.read_csv(res / "tables/runs.csv")
    assert {(r.env, r.variant, r.seed) for r in runs.itertuples()} == jobs
    assert set(runs["status"]) == {"completed"}
    comparison = pd.read_csv(res / "tables/comparison.csv")
    ours = comparison[comparison["seeds_planned"] > 0]
    for env in cfg["envs"]:
        assert list(ours.loc[ours["env"] == env, "method"]) == cfg["methods"]
    assert ours["final_return_mean"].notna().all()
    ng = ours[ours["method"] == "natural-gradient"]
    assert ng["choice"].str.startswith("best of step_size in {0.3, 1} by final return").all()
    markdown = (res / "tables/comparison.md").read_text()
    assert all(f"| {m} |" in markdown for m in cfg["methods"])
    assert "A quick look, not the paper's experiment" in markdown  # the budget says so
    # The paper's claims: decided where this grid can (one seed: undecided), the rest named.
    verdicts = pd.read_csv(res / "tables/claims.csv", dtype={"claim": str})
    assert list(verdicts["claim"]) == ["1", "2a", "4a", "4b"]  # the claims on its envs
    assert set(verdicts["verdict"]) == {"undecided"}  # one seed decides nothing
    claims_md = (res / "tables/claims.md").read_text()
    assert "claim 3 is not decided by this grid: it does not run Hopper-v5, Walker2d-v5" in (
        claims_md
    )
    assert (res / "plots/performance_profile.png").stat().st_size > 1000
    curves = pd.read_csv(res / "tables/curves.csv")
    assert set(curves["variant"]) == {v for _, v, _ in jobs}
    for name in [*cfg["envs"], "figure4"]:
        for fmt in ("png", "pdf"):
            assert (res / f"plots/{name}.{fmt}").stat().st_size > 1000
    # MLflow: one finished run per training job, plus the summary run with the tables and plots
    from mlflow.tracking import MlflowClient

    summary = json.loads((res / "mlflow_summary.json").read_text())
    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    experiment = client.get_experiment_by_name(cfg["experiment"])
    all_runs = client.search_runs([experiment.experiment_id], max_results=1000)
    training = [r for r in all_runs if r.data.tags.get("kind") != "summary"]
    assert len(training) == len(jobs) and len(all_runs) == len(jobs) + 1
    assert {r.info.status for r in all_runs} == {"FINISHED"}
    names = {
        (r.data.tags["env"], r.data.tags["method"], int(r.data.tags["seed"])) for r in training
    }
    assert names == {(e, v.split("@")[0], s) for e, v, s in jobs}
    step_sizes = {
        r.data.params["step_size"] for r in training if r.data.tags["method"] == "natural-gradient"
    }
    assert step_sizes == {"0.3", "1.0"}
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "tables")}
    artifacts |= {a.path for a in client.list_artifacts(summary["run_id"], "plots")}
    assert {"tables/comparison.md", "tables/comparison.csv", "plots/figure4.png"} <= artifacts
    run = client.get_run(summary["run_id"])
    assert run.data.metrics["training_runs_finished_in_store"] == len(jobs)
    # the report builds from the finished run (test_the_report_opens_with_the_answer reads it)
    assert smoke_report(smoke).stat().st_size > 100_000


def test_smoke_grid_through_slurm(smoke):
    if not smoke["slurm"]:
        pytest.skip(f"no single-node SLURM here: {smoke['why_not']}")
    result = smoke["result"]
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    out = result.stdout + result.stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    # every job but the local mlflow_store and the target rule went to SLURM
    expected = len(planned_train_jobs(grid_config("smoke"))) + len(LIGHT_RULES) - 2
    assert len(set(submitted)) == expected


def test_entries_may_name_lists_of_envs_and_methods():
    cfg = {
        **GRID,
        "exclude": [{"env": ["CartPole-v1", "Hopper-v5"], "method": ["natural-gradient"]}],
        "overrides": [
            {"method": ["trpo-single-path", "natural-gradient"], "set": {"iterations": 7}}
        ],
    }
    runs = expand_grid(cfg)
    assert {(r.env, r.method) for r in runs} == {
        ("CartPole-v1", "trpo-single-path"),
        ("Hopper-v5", "trpo-single-path"),
    }
    assert all(dict(r.settings)["iterations"] == 7 for r in runs)


def test_a_deleted_run_file_is_brought_back_not_ignored(smoke, tmp_path):
    # Run folders are targets of `all`: with the tables up to date, a deleted progress.csv or
    # a whole deleted run folder still plans exactly that run's train job (and the tables).
    work = tmp_path / "copy"
    shutil.copytree(smoke["dir"], work, symlinks=True)
    res = work / grid_config("smoke")["results"]
    (res / "runs/CartPole-v1/cem/seed0/progress.csv").unlink()
    shutil.rmtree(res / "runs/InvertedPendulum-v5/vpg/seed0")
    # mtime triggers only: the copy moved the absolute MLflow store path in every train job's
    # command (a params change that a user rerunning in place never sees).
    result = snakemake(
        "-n",
        "--rerun-triggers",
        "mtime",
        "--configfile",
        "config/smoke.yaml",
        cwd=work,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    planned = set(re.findall(r"wildcards: env=([^,\s]+), variant=([^,\s]+), seed=(\d+)", out))
    assert planned == {("CartPole-v1", "cem", "0"), ("InvertedPendulum-v5", "vpg", "0")}


def test_committed_runs_are_adopted_not_trained_again(smoke, tmp_path):
    """A grid carried over in git (trpo_bench.committed): `trpo-bench publish` writes the
    finished runs' compact files; a fresh checkout whose grid names them as committed_runs
    adopts every one that is the same run (no train job), byte for byte, and trains a run whose
    config differs."""
    from trpo_bench import cli
    from trpo_bench.committed import adoptable_runs, committed_problem
    from trpo_bench.grid import run_config

    cfg = grid_config("smoke")
    res = smoke["dir"] / cfg["results"]
    committed = tmp_path / "committed"
    assert cli.main(["publish", str(res), str(committed)]) == 0
    runs = expand_grid(cfg)
    first = runs[0]
    assert sorted(p.name for p in (committed / first.folder.removeprefix("runs/")).iterdir()) == [
        "progress.csv.gz",
        "summary.json",
    ]
    # Same grid: every run adopted. Another steps_per_iter for one env: those runs are not.
    fresh = tmp_path / "fresh"
    ours = fresh / cfg["results"]
    assert set(adoptable_runs({**cfg, "committed_runs": str(committed)}, runs, ours)) == {
        r.folder for r in runs
    }
    # A run this results folder has started itself (its checkpoint is there) is its own.
    started = ours / first.folder / "checkpoint.pt"
    started.parent.mkdir(parents=True)
    started.write_bytes(b"")
    assert first.folder not in adoptable_runs({**cfg, "committed_runs": str(committed)}, runs, ours)
    shutil.rmtree(fresh)
    # Each seed is its own run: seed 0's files placed where seed 1's would be are not seed 1.
    two_seeds = {**cfg, "seeds": [0, 1], "committed_runs": str(committed)}
    runs_2 = expand_grid(two_seeds)
    seed1 = next(r for r in runs_2 if r.seed == 1)
    shutil.copytree(
        committed / first.folder.removeprefix("runs/"),
        committed / seed1.folder.removeprefix("runs/"),
    )
    adopted_2 = adoptable_runs(two_seeds, runs_2, ours)
    assert first.folder in adopted_2 and seed1.folder not in adopted_2
    shutil.rmtree(committed / seed1.folder.removeprefix("runs/"))
    changed = {**cfg, "committed_runs": str(committed), "overrides": [*cfg["overrides"]]}
    changed["overrides"].append({"env": "CartPole-v1", "set": {"steps_per_iter": 700}})
    changed_runs = expand_grid(changed)
    adopted = adoptable_runs(changed, changed_runs, ours)
    assert set(adopted) == {r.folder for r in changed_runs if r.env != "CartPole-v1"}
    config = run_config(changed_runs[0], cfg["preset"])
    problem = committed_problem(
        committed / changed_runs[0].folder.removeprefix("runs/"),
        config.to_dict(),
        config.iterations,
    )
    assert problem == "another config (differing: steps_per_iter)"

    # Through the workflow, as a user runs it: the plan has no train job, and the run table
    # built from the adopted files is the one the trained runs gave.
    args = ["--configfile", "config/smoke.yaml", "--config", f"committed_runs={committed}"]
    plan = snakemake("-n", *args, cwd=fresh, timeout=300)
    assert plan.returncode == 0, plan.stderr + plan.stdout
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout.split("Job stats:")[1], re.M))
    assert int(stats["adopt"]) == len(runs) and "train" not in stats
    assert f"{len(runs)} of the grid's {len(runs)} runs are committed" in plan.stderr
    built = snakemake("--cores", "2", f"{cfg['results']}/tables/runs.csv", *args, cwd=fresh)
    assert built.returncode == 0, built.stderr[-3000:]
    for run in runs:
        assert (ours / run.folder / "progress.csv").read_bytes() == (
            res / run.folder / "progress.csv"
        ).read_bytes()
    expected = pd.read_csv(res / "tables/runs.csv")
    pd.testing.assert_frame_equal(pd.read_csv(ours / "tables/runs.csv"), expected)


def smoke_report(smoke) -> Path:
    """``snakemake --report report.html`` on the finished smoke grid, as a user runs it (built
    once; a report of an existing results folder takes seconds)."""
    report = smoke["dir"] / "report.html"
    if not report.exists():
        built = snakemake(
            "--configfile",
            "config/smoke.yaml",
            "--report",
            str(report),
            cwd=smoke["dir"],
            timeout=300,
        )
        assert built.returncode == 0, built.stderr[-3000:]
    return report


def report_items(report: Path) -> tuple[str, dict[str, dict]]:
    """The report's start page (its workflow description, HTML) and its result items: Snakemake
    9 writes both into the page as JavaScript literals (``var workflow_desc = "...";``, ``var
    results = {...};``, JSON), each item's file as a base64 ``data:`` URI."""
    text = report.read_text()

    def literal(name: str):
        # in its own <script id=...> block (a bundled library has a `var results` of its own)
        found = re.search(rf'<script id="{name.split("_")[0]}[^"]*">\s*var {name} = ', text)
        assert found, f"no `var {name}` in {report}"
        return json.JSONDecoder().raw_decode(text, found.end())[0]

    return literal("workflow_desc"), literal("results")


def decoded(item: dict) -> str:
    import base64

    return base64.b64decode(item["data_uri"].split("base64,", 1)[1]).decode("utf-8")


def test_the_report_opens_with_the_answer(smoke):
    assert smoke["result"].returncode == 0
    start, items = report_items(smoke_report(smoke))
    by_name = {item["filename"]: item for item in items.values()}
    # the comparison table is an HTML item, rendered (a table, not a download link)
    comparison = by_name["comparison.html"]
    assert comparison["mime_type"] == "text/html"
    page = decoded(comparison)
    row = re.search(
        r"<tr>\s*<td>CartPole-v1</td>\s*<td>trpo-single-path</td>\s*<td>1/1</td>\s*"
        r"<td>(-?[\d,]+\.\d)</td>",
        page,
    )
    assert row, page[:3000]
    table = pd.read_csv(smoke["dir"] / grid_config("smoke")["results"] / "tables/comparison.csv")
    ours = table[(table["env"] == "CartPole-v1") & (table["method"] == "trpo-single-path")]
    assert float(row.group(1).replace(",", "")) == pytest.approx(
        ours["final_return_mean"].iloc[0], abs=0.051
    )
    # the start page: the claims and verdicts, the budget share, the comparison, the figure
    assert "The paper's claims" in start and 'class="verdict-undecided">undecided<' in start
    assert "Budget per run, as a share of the paper's" in start
    assert (
        "InvertedPendulum-v5: 1.76K steps (0.088% of our preset's 2M; the paper gives none)"
        in start
    )
    assert "<td>InvertedPendulum-v5</td>" in start and "<td>trpo-single-path</td>" in start
    assert "data:image/png;base64," in start  # figure4, embedded
    assert start.index("The paper's claims") < start.index("trpo-bench reproduces")
    # categories in order, items labelled
    assert by_name["figure4.png"]["labels"] == {"figure": "figure4", "format": "png"}
    assert by_name["claims.html"]["labels"] == {"page": "3. claims and verdicts"}
    assert "locomotion comparison" not in start  # Pong is not locomotion


def test_mlflow_is_browsable_and_the_store_lock_is_gone(smoke):
    assert smoke["result"].returncode == 0
    from mlflow.tracking import MlflowClient

    res = smoke["dir"] / grid_config("smoke")["results"]
    assert not (res / "mlflow.db.lock").exists()  # deleted by its last holder
    summary = json.loads((res / "mlflow_summary.json").read_text())
    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    experiment = client.get_experiment_by_name(grid_config("smoke")["experiment"])
    note = experiment.tags["mlflow.note.content"]
    assert "`1_eval_return`" in note and "`3_env_steps`" in note
    assert f"#/experiments/{experiment.experiment_id}/runs/{summary['run_id']}" in note
    runs = client.search_runs([experiment.experiment_id], "tags.method = 'natural-gradient'")
    names = {r.info.run_name for r in runs}
    assert names == {"CartPole/ng@0.3/s0", "CartPole/ng@1/s0", "InvertedPendulum/ng@0.3/s0",
                     "InvertedPendulum/ng@1/s0"}  # fmt: skip
    run = runs[0]
    assert run.data.tags["run"].startswith(run.data.tags["env"] + "/natural-gradient@step_size=")
    assert sorted(run.data.metrics)[:3] == ["1_eval_return", "2_train_return", "3_env_steps"]
    assert run.data.metrics["3_env_steps"] == run.data.metrics["env_steps"]
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "report")}
    assert "report/overview.html" in artifacts


def test_store_lock_is_deleted_by_its_holder_and_a_waiter_relocks_the_path(tmp_path):
    import threading
    import time

    from trpo_bench.run.mlflow_log import store_lock

    uri = f"sqlite:///{tmp_path}/m.db"
    lock = tmp_path / "m.db.lock"
    order = []

    def waiter():
        with store_lock(uri, timeout_s=10):
            order.append(("waiter", lock.exists()))

    with store_lock(uri, timeout_s=1):
        assert lock.exists()
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)  # the waiter has opened the lock file and waits on it
        order.append(("holder", True))
    thread.join(10)
    # the waiter got the lock only after the holder let go, on a file of its own
    assert order == [("holder", True), ("waiter", True)]
    assert not lock.exists()
