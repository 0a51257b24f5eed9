"""How long Snakemake takes to plan a large grid: ``snakemake -n`` on the paper grid
(config/config.yaml, 63 training jobs per seed) with 5 and with many seeds.

    python benchmarks/bench_planning.py                  # 5 and 100 seeds: 315 and 6,300 jobs
    python benchmarks/bench_planning.py --seeds 5 100 200

Each grid is written as a config file read on top of config/config.yaml (only ``seeds`` and a
``results`` folder in a temporary directory change) and dry-run once per round, the grids taken
in turn within each round so that a busy machine slows them alike. Printed per grid: the
training jobs planned (from the dry run's job table), the best wall time over the rounds, and the
planning cost per job: the slope between the smallest and each larger grid, which leaves out
what every invocation pays once (interpreter, imports, checking the grid). Issue 15's target:
6,300 training jobs in under 30 s on this project's 2-core machine.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(config: Path, workdir: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``snakemake -n`` of ``config``, and the training jobs it
    planned."""
    start, cpu = time.perf_counter(), _children_cpu_s()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "snakemake", "-n", "--cores", "64"),
            *("--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)),
            *("--configfile", str(config)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds, cpu = time.perf_counter() - start, _children_cpu_s() - cpu
    if result.returncode != 0:
        sys.exit(f"snakemake -n failed for {config}:\n{result.stderr[-3000:]}")
    m = re.search(r"^train\s+(\d+)$", result.stdout, flags=re.M)
    if m is None:
        sys.exit(f"no train jobs in the dry run of {config}:\n{result.stdout[-2000:]}")
    return seconds, cpu, int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[5, 100],
        help="seeds per grid (63 training jobs each); default 5 100",
    )
    parser.add_argument("--rounds", type=int, default=2, help="dry runs per grid (default 2)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.seeds) or args.rounds < 1:
        parser.error(f"--seeds {args.seeds} and --rounds {args.rounds} must be at least 1")
    seeds = sorted(set(args.seeds))
    with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmp:
        grids = {}
        for n in seeds:
            path = Path(tmp) / f"seeds{n}.yaml"
            path.write_text(yaml.safe_dump({"seeds": list(range(n)), "results": f"r{n}"}))
            grids[n] = path
        best: dict[int, float] = {}
        cpu: dict[int, float] = {}
        jobs: dict[int, int] = {}
        for _ in range(args.rounds):
            for n in seeds:
                seconds, cpu_s, jobs[n] = dry_run(grids[n], Path(tmp))
                best[n] = min(best.get(n, seconds), seconds)
                cpu[n] = min(cpu.get(n, cpu_s), cpu_s)
    base = seeds[0]
    print(
        f"snakemake -n on the paper grid (config/config.yaml), best of {args.rounds} "
        "(wall time; CPU time, which a busy machine does not inflate):"
    )
    for n in seeds:
        line = f"  {n:4d} seeds: {jobs[n]:6,d} training jobs, {best[n]:6.1f} s ({cpu[n]:.1f} CPU s)"
        if n != base and jobs[n] > jobs[base]:
            added = jobs[n] - jobs[base]
            per_job = (best[n] - best[base]) / added
            per_cpu = (cpu[n] - cpu[base]) / added
            line += (
                f"; per added job {per_job * 1000:.1f} ms ({per_cpu * 1000:.1f} CPU ms), "
                f"the slope from {base} seeds"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
