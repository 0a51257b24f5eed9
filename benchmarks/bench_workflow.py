"""The workflow's cost: a grid's measured wall time against the sum of its jobs' times, and
estimates of a grid's CPU time from per-job rates measured with short runs.

  python benchmarks/bench_workflow.py run --cores 2 [--configfile config/quick.yaml] DIR
      runs the grid (config/config.yaml, the full comparison, with the given files read on top)
      into DIR (snakemake --directory DIR) and prints its wall time, the sum of
      its jobs' times (Snakemake's benchmark files: every job, process start included), their
      ratio (the parallel speed-up; the core count is the ideal) and the parallel efficiency;
  python benchmarks/bench_workflow.py estimate [--configfile config/quick.yaml] [--cores 2]
      measures each (env, method) of the grid's training rate (env steps per CPU second of
      the steady iterations of a short run at the grid's own settings: envs, network, batch
      shape; benchmarks/rate_worker.py), one evaluation's CPU cost and the fixed cost of one
      job (process start, imports, MLflow), then prints per-job estimates and the grid's
      CPU-hours (training, evaluation protocol, job starts); with --cores, the wall time that
      many cores would need at best; with --rates-out FILE, writes the measured figures in the
      layout of trpo_bench/presets/rates.yaml (the table from which `snakemake` prints its
      estimate before a grid runs); with --before DIR, measures the code checked out in DIR
      too, pair by pair, and prints the training CPU-hours before and after at the same budgets.

CPU time, not wall time, is measured for the rates: steadier on a machine that others share.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import update_config

from trpo_bench.analysis.estimate import evaluations
from trpo_bench.envs.registry import ENV_SPECS
from trpo_bench.grid import Run, expand_grid, run_config

CLASSIC = ("CartPole-v1", "InvertedPendulum-v5")


def family_of(env: str) -> str:
    return ENV_SPECS[env].family


ROOT = Path(__file__).resolve().parents[1]


def load_grid(configfiles: list[str]) -> dict:
    """config/config.yaml (the full comparison) with the given files read on top (as Snakemake
    merges them)."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for path in configfiles:
        update_config(cfg, yaml.safe_load(Path(path).read_text()))
    return cfg


def grid_name(configfiles: list[str]) -> str:
    """config/config.yaml is the full comparison; the others are read on top of it."""
    return " + ".join(["config/config.yaml", *configfiles]) if configfiles else "(full) config.yaml"


def run_grid(args: argparse.Namespace) -> None:
    work = Path(args.dir).resolve()
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    cmd += ["--directory", str(work), "--cores", str(args.cores), "--quiet", "progress"]
    cmd += ["--configfile", *args.configfile] if args.configfile else []
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    results = work / load_grid(args.configfile)["results"]
    jobs = [pd.read_csv(p, sep="\t") for p in sorted(results.glob("benchmarks/**/*.tsv"))]
    table = pd.concat(jobs, ignore_index=True)
    total = table["s"].sum()
    print(f"grid {grid_name(args.configfile)} with --cores {args.cores}:")
    print(f"  wall time of `snakemake` (DAG, all jobs):   {wall:9.1f} s ({wall / 60:.1f} min)")
    print(
        f"  sum of the {len(table)} jobs' wall times:        {total:9.1f} s ({total / 60:.1f} min)"
    )
    print(
        f"  ratio sum / wall (parallel speed-up):        {total / wall:9.2f} (ideal {args.cores})"
    )
    print(f"  parallel efficiency sum / (wall x cores):    {total / wall / args.cores:9.2f}")


def job_overhead() -> float:
    """CPU seconds of one `trpo-bench train` process beyond its training loop: interpreter
    start, imports, the MLflow run (into a fresh sqlite store), the result files."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = [sys.executable, "-m", "trpo_bench", "train", "--env", "CartPole-v1"]
        cmd += ["--out", f"{tmp}/run", "--iterations", "1", "--steps-per-iter", "200", "--quiet"]
        cmd += ["--set", f"mlflow_uri=sqlite:///{tmp}/mlflow.db", "--set", "num_envs=1"]
        subprocess.run(cmd, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        train_s = float(pd.read_csv(f"{tmp}/run/progress.csv")["wall_time_s"].iloc[-1])
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) - train_s


WORKER = Path(__file__).with_name("rate_worker.py")


def worker(run: Run, preset: str, cap: int, iterations: int, src: str = "") -> dict:
    """rate_worker.py's figures for one run of ``iterations`` capped iterations, in a process
    of its own (the code in ``src`` first on the path, if given)."""
    env = dict(os.environ, PYTHONPATH=src) if src else None
    settings = json.dumps(dict(run.settings))
    cmd = [sys.executable, str(WORKER), run.env, run.method, preset, settings, str(cap)]
    done = subprocess.run([*cmd, str(iterations)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measured_rate(
    run: Run, preset: str, cap: int, src: str = "", iterations: int = 4
) -> tuple[float, dict]:
    """Env steps per CPU second of the steady iterations of one run (rate_worker.py: the first
    and the last iteration left out), and the run's figures (its evaluation cost)."""
    out = worker(run, preset, cap, iterations, src)
    return out["steady_steps"] / out["steady_cpu_s"], out


def estimate(args: argparse.Namespace) -> None:
    grid = load_grid(args.configfile)
    runs = expand_grid(grid)
    overhead = job_overhead()
    print(f"fixed cost of one train job (process, imports, MLflow): {overhead:.1f} CPU s")
    before = str(Path(args.before).resolve()) if args.before else ""
    if before:
        print(f"rates of the code in {before} measured beside this checkout's, pair by pair")
    measured: dict[tuple[str, str], dict] = {}
    rows = []
    for run in runs:
        key = (run.env, run.method)
        if (args.only and run.env not in args.only) or (
            args.methods and run.method not in args.methods
        ):
            continue
        if key not in measured:
            cap = args.cap_classic if run.env in CLASSIC else args.cap
            m: dict = {}
            # Alternate which code goes first, so that neither always meets a warmer machine.
            order = [("after", ""), ("before", before)] if before else [("after", "")]
            if before and len(measured) % 2:
                order.reverse()
            for name, src in order:
                m[name], first = measured_rate(run, grid["preset"], cap, src, args.iterations)
                if name == "after":
                    m["eval_cpu_s"] = first["eval_cpu_s"] or 0.0
                    m["eval_env_steps"] = first["eval_env_steps"] or 0.0
            measured[key] = m
            line = f"  {run.env:20s} {run.method:17s} {m['after']:8,.0f} steps/CPU s"
            if before:
                line += f" (before {m['before']:8,.0f}: x{m['after'] / m['before']:.2f})"
            print(line + f"; one evaluation {m['eval_cpu_s']:.1f} CPU s", flush=True)
        m = measured[key]
        full = run_config(run, grid["preset"])
        steps = full.iterations * full.steps_per_iter
        row = {
            "env": run.env,
            "method": run.method,
            "variant": run.variant,
            "seed": run.seed,
            "env_steps": steps,
            "steps_per_cpu_s": m["after"],
            "train_cpu_s": steps / m["after"],
            "evaluations": evaluations(full.iterations, full.eval_every),
            "eval_cpu_s": evaluations(full.iterations, full.eval_every) * m["eval_cpu_s"],
        }
        if before:
            row["steps_per_cpu_s_before"] = m["before"]
            row["train_cpu_s_before"] = steps / m["before"]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["job_cpu_s"] = table["train_cpu_s"] + table["eval_cpu_s"] + overhead
    cols = ["jobs", "env_steps", "steps_per_cpu_s", "train_cpu_s", "eval_cpu_s"]
    per = table.assign(jobs=1).groupby(["env", "method"], sort=False)
    per = per.agg({c: "sum" if c == "jobs" else "first" for c in cols})
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(per.round(1).to_string())
    fam = table["env"].map(family_of)
    hours = lambda s: f"{s / 3600:,.0f}"  # noqa: E731
    total = table["job_cpu_s"].sum()
    print(f"grid {grid_name(args.configfile)}: {len(table)} train jobs")
    print(
        f"  estimated CPU time of the train jobs: {total:,.0f} s = {total / 3600:,.1f} CPU-hours"
        f" (training {hours(table['train_cpu_s'].sum())}, evaluation protocol "
        f"{hours(table['eval_cpu_s'].sum())}, job start {hours(overhead * len(table))})"
    )
    for family, part in table.groupby(fam, sort=False):
        print(
            f"    {family}: training {hours(part['train_cpu_s'].sum())}, evaluation "
            f"{hours(part['eval_cpu_s'].sum())} CPU-hours"
        )
    if before:
        old, new = table["train_cpu_s_before"].sum(), table["train_cpu_s"].sum()
        print(
            f"  training CPU-hours, the same budgets: before {hours(old)}, after {hours(new)} "
            f"({100 * (new / old - 1):+.1f}%)"
        )
        for family, part in table.groupby(fam, sort=False):
            o, n = part["train_cpu_s_before"].sum(), part["train_cpu_s"].sum()
            print(f"    {family}: before {hours(o)}, after {hours(n)} ({100 * (n / o - 1):+.1f}%)")
    if args.cores:
        longest = table["job_cpu_s"].max()
        wall = max(total / args.cores, longest)
        print(
            f"  at best on {args.cores} cores: {wall / 60:,.1f} min "
            f"(the longest job alone: {longest / 60:.1f} min)"
        )
    if math.isfinite(total) and args.csv:
        table.to_csv(args.csv, index=False)
    if args.rates_out:
        envs: dict[str, dict[str, int]] = {}
        evals: dict[str, float] = {}
        for (env, method), m in measured.items():
            envs.setdefault(env, {})[method] = round(m["after"])
            evals[env] = max(evals.get(env, 0.0), round(m["eval_cpu_s"], 1))
        data = {"fixed_cost_s": round(overhead, 1), "envs": envs, "evaluation_cpu_s": evals}
        Path(args.rates_out).write_text(yaml.safe_dump(data, sort_keys=False))
        print(f"  rates written to {args.rates_out} (trpo_bench/presets/rates.yaml's layout)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a grid and compare its wall time with its jobs' times")
    r.add_argument("dir", help="working directory for the run (snakemake --directory)")
    r.add_argument("--cores", type=int, default=2)
    r.add_argument("--configfile", nargs="*", default=[])
    e = sub.add_parser("estimate", help="estimate a grid's CPU time from measured rates")
    e.add_argument("--configfile", nargs="*", default=[])
    e.add_argument("--cores", type=int, default=0)
    e.add_argument("--cap", type=int, default=20_000, help="steps per measured iteration")
    e.add_argument("--cap-classic", type=int, default=10_000, help="the same, cheap envs")
    e.add_argument("--csv", default="", help="write the per-job estimates here")
    e.add_argument("--rates-out", default="", help="write the measured rates here (YAML)")
    e.add_argument(
        "--before",
        default="",
        help="a checkout of earlier code (e.g. `git archive REV | tar -x -C DIR`): its rates "
        "are measured too, pair by pair beside this checkout's, for a before/after comparison",
    )
    e.add_argument("--only", nargs="*", default=[], help="measure only these envs")
    e.add_argument("--methods", nargs="*", default=[], help="measure only these methods")
    e.add_argument(
        "--iterations",
        type=int,
        default=4,
        help="iterations per measured run (first and last left out)",
    )
    args = ap.parse_args()
    {"run": run_grid, "estimate": estimate}[args.command](args)


if __name__ == "__main__":
    main()
