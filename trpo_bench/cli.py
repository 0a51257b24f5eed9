"""``trpo-bench``: train one run, list methods and environments.

User errors (unknown env, bad value, unreadable config) print one clear line and exit with
status 2 before any work starts; they never print a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from trpo_bench.analysis.status import run_status
from trpo_bench.committed import publish_runs
from trpo_bench.config import FIELDS, ConfigError, parse_overrides, read_yaml_file
from trpo_bench.envs.registry import ENV_SPECS, env_spec_lines
from trpo_bench.envs.workers import EnvWorkerError, available_cores
from trpo_bench.methods.registry import METHODS
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import resolve_device
from trpo_bench.run.timelimit import TimeLimitReached, job_time_limit
from trpo_bench.run.trainer import Interrupted, train

EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 1


def _config_help() -> str:
    lines = ["config keys (set with --set key=value or in a --config YAML file):"]
    for name, f in FIELDS.items():
        default = f.default if not callable(f.default_factory) else f.default_factory()
        lines.append(f"  {name} (default {default!r}): {f.metadata.get('doc', '')}")
    for m in METHODS.values():  # keys a method declares (trpo_bench.api.Method.config_keys)
        if m.config_keys:
            lines.append(f"method {m.name}'s own keys ({m.origin}):")
            for key in m.config_keys:
                limits = ", ".join(f"{k} {v}" for k, v in key.checks.items())
                shown = f"default {key.default!r}" + (f"; {limits}" if limits else "")
                lines.append(f"  {key.name} ({shown}): {key.doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trpo-bench",
        description="Reproduce Schulman et al. 2015, 'Trust Region Policy Optimization'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train one run (env x method x seed) into a run folder",
        description=(
            "Train one run and write progress.csv, summary.json and policy.pt into --out, "
            "logging to MLflow. Config is resolved as: field defaults < env preset < method "
            "preset < --config files (in order) < --set overrides (in order)."
        ),
        epilog=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--env", default="", help="environment id (see `trpo-bench envs`)")
    train.add_argument(
        "--method",
        default="trpo-single-path",
        help="method (see `trpo-bench methods`); default trpo-single-path",
    )
    train.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument(
        "--iterations", type=int, default=None, help="policy iterations (default: the env preset's)"
    )
    train.add_argument(
        "--steps-per-iter",
        type=int,
        default=None,
        help="env steps per iteration, all envs together (default: env preset's)",
    )
    train.add_argument(
        "--preset",
        default="quick",
        choices=("quick", "paper"),
        help="budget preset: quick (minutes here) or paper (Table 2 budgets)",
    )
    train.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML file of config keys; may be repeated",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one config key; may be repeated",
    )
    train.add_argument("--quiet", action="store_true", help="no line per iteration")
    train.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop before MINUTES of wall time, the last iteration that fits checkpointed, "
        "with exit status 75 (run the same command again to go on); 0: no limit. Default: "
        "inside a SLURM job, the job's time left (squeue); elsewhere none",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config and exit without training",
    )

    sub.add_parser("methods", help="list the methods with one line each")
    envs = sub.add_parser(
        "envs",
        help="list the known environments, or print the spec an env id would get",
        description=(
            "Without ID: the environments with a preset, one line each, and where each comes "
            "from. With ID (any id gymnasium can make, `module:Id` included): the spec a run "
            "on it would use (family, defaults, time limit, whether vine can restore it), "
            "before any run."
        ),
    )
    envs.add_argument("id", nargs="?", help="an env id, e.g. Ant-v5 or mypkg:MyTask-v0")
    add_status_parser(sub)
    publish = sub.add_parser(
        "publish",
        help="write a grid's completed runs as compact files to commit (a later grid adopts them)",
        description=(
            "Write each completed run folder of RESULTS/runs as summary.json and "
            "progress.csv.gz under DEST (the run folders' layout; no checkpoint, no policy). A "
            "grid whose committed_runs is DEST adopts these runs instead of training them "
            "again (trpo_bench.committed)."
        ),
    )
    publish.add_argument("results", help="a grid's results root, e.g. results/long")
    publish.add_argument("dest", help="the folder to commit, e.g. docs/reproduction/long/runs")
    ablations = sub.add_parser(
        "ablations",
        help="decide the ablation grids from their committed runs (docs/reproduction/ablations.md)",
        description=(
            "For each ablation grid file (its `ablation` and `committed_runs` entries), compare "
            "every swept value with the baseline on the committed runs and write the page "
            "(OUT) and its table (OUT with .csv)."
        ),
    )
    ablations.add_argument(
        "grids", nargs="+", help="ablation grid files, e.g. config/ablation-*.yaml"
    )
    ablations.add_argument(
        "--out", default="docs/reproduction/ablations.md", help="the page to write"
    )
    long_runs = sub.add_parser(
        "long-runs",
        help="the long runs' page from their committed runs (docs/reproduction/long.md)",
        description="Write the page of a long grid (config/long.yaml) from its committed runs.",
    )
    long_runs.add_argument("grid", help="the long grid file, config/long.yaml")
    long_runs.add_argument("--out", default="docs/reproduction/long.md", help="the page to write")
    long_runs.add_argument(
        "--short-runs",
        default="docs/reproduction/runs.csv",
        help="the claims grid's run table, for the same methods at the shorter budget",
    )
    refresh = sub.add_parser(
        "refresh-report",
        help="re-decide a committed reproduction page from its own run table",
        description=(
            "Re-decide the claims of a committed reproduction folder (docs/reproduction) from "
            "its runs.csv and comparison.csv with this commit's statistics, re-render its "
            "discussion from discussion.template.md and rewrite README.md, keeping the runs' "
            "header (commit, machine, software, time). For when the run folders are gone; "
            "with them, the workflow's rule reproduction rewrites the whole folder."
        ),
    )
    refresh.add_argument("folder", help="the committed folder, e.g. docs/reproduction")
    refresh.add_argument(
        "--configfile",
        default="config/claims.yaml",
        help="its grid, read on top of config/config.yaml",
    )
    return parser


def add_status_parser(sub: argparse._SubParsersAction) -> None:
    """``trpo-bench status``: see ``trpo_bench.analysis.status``."""
    status = sub.add_parser(
        "status",
        help="where every run of a grid stands: progress, returns, state, time left",
        description=(
            "Show every run of a grid's results folder (runs/<env>/<variant>/seed<N>/): "
            "iterations done of those planned, latest training and evaluation return, state "
            "(running, stalled, pending, done, failed, diverged, interrupted) and the time left, "
            "for each run and for the grid. Only reads files: safe while snakemake runs, "
            "locally or on SLURM."
        ),
    )
    status.add_argument(
        "results",
        nargs="?",
        default="",
        metavar="RESULTS_DIR",
        help="the grid's results root, e.g. results or results/paper (default: the grid's "
        "`results` from --configfile)",
    )
    status.add_argument(
        "--configfile",
        nargs="+",
        default=[],
        metavar="FILE",
        help="the grid's config files as given to snakemake (read on top of config/config.yaml): "
        "lists the runs not started yet as pending, with their planned iterations",
    )
    status.add_argument(
        "--cores",
        type=int,
        default=None,
        help="cores (jobs at once) the grid runs on, for its time left (default 1)",
    )
    status.add_argument("--plain", action="store_true", help="plain text lines, no table")
    status.add_argument("--json", action="store_true", help="JSON for scripts")
    status.add_argument(
        "--only",
        default="",
        metavar="STATES",
        help="show only these states, comma-separated (e.g. running,failed); the totals count all",
    )
    status.add_argument(
        "--stale-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="a started run with no live writer seen and no write for this long (or 3 of its "
        "iterations, if longer) is stalled (default 600)",
    )


def resolve_train_config(args: argparse.Namespace):  # -> TrainConfig
    layers = [(f"config file {p}", read_yaml_file(p)) for p in args.config]
    cli: dict[str, object] = {}
    if args.seed is not None:
        cli["seed"] = args.seed
    if args.iterations is not None:
        cli["iterations"] = args.iterations
    if args.steps_per_iter is not None:
        cli["steps_per_iter"] = args.steps_per_iter
    layers.append(("command line", cli))
    layers.append(("--set", parse_overrides(args.overrides)))
    return build_config(args.env, args.method, layers=layers, preset=args.preset)


def check_writable(out: Path) -> None:
    """Fail early, naming the folder, if ``out`` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"output folder {str(out)!r} is not writable: {e.strerror}") from None


def warn_threads(threads: int, key: str = "torch_threads") -> None:
    """One warning line when ``key`` (torch_threads, env_workers) exceeds the cores this process
    may use."""
    cores = available_cores()
    if threads > cores:
        print(
            f"trpo-bench: warning: {key}={threads} is more than the {cores} cores "
            "available here; they will compete (slower, not faster)",
            file=sys.stderr,
        )


def write_ablations(grid_files: Sequence[str], out: Path) -> int:
    """``trpo-bench ablations``: the page of :mod:`trpo_bench.analysis.ablations`."""
    import pandas as pd

    from trpo_bench.analysis import ablations
    from trpo_bench.analysis.committed_runs import read_committed

    sections, tables = [], []
    for grid_file in grid_files:
        grid = read_yaml_file(grid_file)
        try:
            specs = ablations.ablation_specs(
                grid_file, grid.get("ablation") if isinstance(grid, dict) else None
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        folder = grid.get("committed_runs") or ""
        if not folder:
            raise ConfigError(f"{grid_file} names no committed_runs folder to read the runs from")
        runs = read_committed(folder, progress=False)[0]
        for spec in specs:
            table = ablations.ablation_table(Path(grid_file).stem, spec, runs)
            own = runs[runs["method"].isin(ablations.spec_methods(spec))] if len(runs) else runs
            sections.append((grid_file, spec, table, ablations.provenance_text(own)))
            tables.append(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(ablations.ablations_markdown(sections))
    # Each grid's swept values keep their own type (True, 20, 0.995): object columns, so that
    # concatenating a bool grid with an int one does not write 0.0 and 20.0.
    as_written = [t.astype({"value": object, "baseline": object}) for t in tables]
    pd.concat(as_written, ignore_index=True).to_csv(out.with_suffix(".csv"), index=False)
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0


def read_grid(grid_file: str) -> dict:
    """A grid file read on top of config/config.yaml, as Snakemake merges them."""
    from snakemake.utils import update_config

    root = Path(__file__).resolve().parents[1] / "config"
    grid = read_yaml_file(root / "config.yaml") if (root / "config.yaml").is_file() else {}
    update_config(grid, read_yaml_file(grid_file))
    return grid


def refresh_committed_report(folder: Path, grid_file: str) -> int:
    """``trpo-bench refresh-report``: :func:`trpo_bench.analysis.reproduction.refresh_report`."""
    from trpo_bench.analysis.references import load_reference
    from trpo_bench.analysis.reproduction import refresh_report

    if not (folder / "runs.csv").is_file() or not (folder / "README.md").is_file():
        raise ConfigError(f"{str(folder)!r} holds no runs.csv and README.md of a reproduction")
    grid = read_grid(grid_file)
    reference = Path(__file__).resolve().parents[1] / grid.get("reference", "config/reference.yaml")
    norm = load_reference(reference).get("normalization", {})
    command = f"trpo-bench refresh-report {folder} --configfile {grid_file}"
    print(f"wrote {refresh_report(folder, grid, grid_file, command, norm)}")
    return 0


def write_long_runs(grid_file: str, out: Path, short_runs: Path) -> int:
    """``trpo-bench long-runs``: the page of :mod:`trpo_bench.analysis.long_runs`."""
    import pandas as pd

    from trpo_bench.analysis.long_runs import write_long_page
    from trpo_bench.analysis.references import load_reference

    grid = read_grid(grid_file)
    if not grid.get("committed_runs"):
        raise ConfigError(f"{grid_file} names no committed_runs folder to read the runs from")
    reference_file = Path(__file__).resolve().parents[1] / grid.get(
        "reference", "config/reference.yaml"
    )
    reference = load_reference(reference_file)
    short = pd.read_csv(short_runs) if short_runs.is_file() else pd.DataFrame()
    out.parent.mkdir(parents=True, exist_ok=True)
    page = write_long_page(grid, grid_file, short, reference, out)
    print(f"wrote {page}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "methods":
            for m in METHODS.values():  # built-in, then plug-ins (entry points)
                print(f"{m.name:20s} [{m.origin}] {m.summary}")
            return 0
        if args.command == "envs":
            if args.id:
                print("\n".join(env_spec_lines(args.id)))
                return 0
            for e in ENV_SPECS.values():
                print(f"{e.id:20s} [{e.source}] {e.summary}")
            print(
                "any other id gymnasium can make runs too, with an inferred spec: "
                "`trpo-bench envs ID` prints it (docs/envs.md)"
            )
            return 0
        if args.command == "status":
            return run_status(args)
        if args.command == "ablations":
            return write_ablations(args.grids, Path(args.out))
        if args.command == "long-runs":
            return write_long_runs(args.grid, Path(args.out), Path(args.short_runs))
        if args.command == "refresh-report":
            return refresh_committed_report(Path(args.folder), args.configfile)
        if args.command == "publish":
            if not (Path(args.results) / "runs").is_dir():
                raise ConfigError(f"{args.results!r} holds no runs/ folder: give a results root")
            written = publish_runs(args.results, args.dest)
            print(f"published {len(written)} completed runs of {args.results} to {args.dest}")
            return 0
        cfg = resolve_train_config(args)
        resolve_device(cfg.device)  # `cuda` on a machine without a GPU fails here, before work
        if args.time_limit is not None and not args.time_limit >= 0:
            raise ConfigError(
                f"--time-limit {args.time_limit:g} is not allowed: give minutes >= 0 (0: no limit)"
            )
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        if not args.out.strip():
            raise ConfigError("--out is empty: give the run folder to write, e.g. --out runs/r1")
        out = Path(args.out)
        check_writable(out)
        warn_threads(cfg.torch_threads)
        warn_threads(min(cfg.env_workers, cfg.num_envs), "env_workers")
    except ConfigError as e:
        print(f"trpo-bench: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR

    # MLflow trouble is reported by one "WARNING: MLFLOW LOGGING FAILED ..." line on stderr;
    # the same text as a Python warning (for library callers) would repeat it here.
    warnings.filterwarnings("ignore", message="MLFLOW LOGGING FAILED")
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        summary = train(cfg, out, log=log, time_limit=job_time_limit(args.time_limit))
    except ConfigError as e:  # found only once the run folder is read (a foreign checkpoint)
        print(f"trpo-bench: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(
            f"trpo-bench: error: disk full ({os.strerror(e.errno)}) while writing the run "
            f"folder {str(out)!r}; free space there and run the same command again (it resumes "
            "from the last checkpoint)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_USER_ERROR
    except EnvWorkerError as e:  # summary.json says failed; the last checkpoint is kept
        print(
            f"trpo-bench: error: {e}\nThe run stopped (status failed); the same command resumes "
            "it from its last checkpoint.",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_RUN_FAILED
    except (Interrupted, TimeLimitReached) as e:
        print(
            f"trpo-bench: {e}; the run resumes from its checkpoint when started again",
            file=sys.stderr,
            flush=True,
        )
        return e.exit_code
    status = summary["status"]
    word = "done" if status == "completed" else f"{status} (not a normal result)"
    print(
        f"{word}: final evaluation return {summary['final_eval_return']:.1f} (training "
        f"{summary['final_return']:.1f}) after {summary['env_steps']} env steps in "
        f"{summary['wall_time_s']:.0f}s -> {out}",
        flush=True,
    )
    return 0


def script_main(method: str, argv: Sequence[str] | None = None) -> int:
    """``python baselines/<script>.py ARGS`` runs ``trpo-bench train --method <method> ARGS``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--method" or a.startswith("--method=") for a in args):
        print(
            f"trpo-bench: error: this script runs --method {method}; "
            "use `trpo-bench train` to choose another method",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    return main(["train", "--method", method, *args])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
