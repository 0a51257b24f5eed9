"""The workflow's cost: a grid's measured wall time against the sum of its jobs' times, and
estimates of a grid's CPU time from per-job rates measured with short runs.

  python benchmarks/bench_workflow.py run --cores 2 [--configfile config/quick.yaml] DIR
      runs the grid (config/config.yaml, the full comparison, with the given files read on top)
      into DIR (snakemake --directory DIR) and prints its wall time, the sum of
      its jobs' times (Snakemake's benchmark files: every job, process start included), their
      ratio (the parallel speed-up; the core count is the ideal) and the parallel efficiency;
  python benchmarks/bench_workflow.py estimate [--configfile config/quick.yaml] [--cores 2]
      measures each (env, method) of the grid's training rate (env steps per CPU second, a
      short run at the grid's own settings: envs, network, batch shape) and the fixed cost of
      one job (process start, imports, MLflow), then prints per-job estimates and the grid's
      CPU-hours; with --cores, the wall time that many cores would need at best; with
      --rates-out FILE, writes the measured rates in the layout of trpo_bench/presets/rates.yaml
      (the table from which `snakemake` prints its estimate before a grid runs).

CPU time, not wall time, is measured for the rates: steadier on a machine that others share.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import update_config

from trpo_bench.grid import expand_grid
from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train

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


def measured_rate(env: str, method: str, settings: dict, preset: str, cap: int) -> float:
    """Env steps per CPU second of training (two iterations of at most ``cap`` steps)."""
    cfg = build_config(env, method, preset=preset, layers=[("grid", settings)])
    steps = min(cfg.steps_per_iter, cap)
    bench = {"iterations": 2, "steps_per_iter": steps, "mlflow": False, "checkpoint_every": 0}
    cfg = build_config(env, method, preset=preset, layers=[("grid", settings), ("bench", bench)])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        summary = train(cfg, Path(tmp) / "run", log=lambda _m: None)
        cpu = time.process_time() - start
    return summary["env_steps"] / cpu


def estimate(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    cfg = load_grid(args.configfile)
    runs = expand_grid(cfg)
    overhead = job_overhead()
    print(f"fixed cost of one train job (process, imports, MLflow): {overhead:.1f} CPU s")
    rates: dict[tuple[str, str], float] = {}
    rows = []
    for run in runs:
        key = (run.env, run.method)
        if key not in rates:
            cap = (
                args.cap_classic if run.env in ("CartPole-v1", "InvertedPendulum-v5") else args.cap
            )
            rates[key] = measured_rate(run.env, run.method, dict(run.settings), cfg["preset"], cap)
        full = build_config(run.env, run.method, preset=cfg["preset"],
                            layers=[("grid", dict(run.settings))])  # fmt: skip
        total_steps = full.iterations * full.steps_per_iter
        rows.append(
            {
                "env": run.env,
                "method": run.method,
                "variant": run.variant,
                "seed": run.seed,
                "env_steps": total_steps,
                "steps_per_cpu_s": rates[key],
                "job_cpu_s": total_steps / rates[key] + overhead,
            }
        )
    table = pd.DataFrame(rows)
    per = table.groupby(["env", "method"], sort=False).agg(
        jobs=("seed", "size"),
        env_steps=("env_steps", "first"),
        steps_per_cpu_s=("steps_per_cpu_s", "first"),
        job_cpu_s=("job_cpu_s", "first"),
    )
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(per.round(1).to_string())
    total = table["job_cpu_s"].sum()
    print(f"grid {grid_name(args.configfile)}: {len(table)} train jobs")
    print(f"  estimated CPU time of the train jobs: {total:,.0f} s = {total / 3600:,.1f} CPU-hours")
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
        for (env, method), rate in rates.items():
            envs.setdefault(env, {})[method] = round(rate)
        text = yaml.safe_dump({"fixed_cost_s": round(overhead, 1), "envs": envs}, sort_keys=False)
        Path(args.rates_out).write_text(text)
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
    args = ap.parse_args()
    {"run": run_grid, "estimate": estimate}[args.command](args)


if __name__ == "__main__":
    main()
