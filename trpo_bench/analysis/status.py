"""``trpo-bench status``: where every run of a grid stands, read from its files alone.

A grid's results root holds one folder per run, ``runs/<env>/<variant>/seed<N>/``
(``trpo_bench.grid.Run.folder``), written by ``trpo_bench.run.recorder.RunRecorder``: progress.csv
(one row per finished iteration, cumulative ``wall_time_s``), summary.json (``status:
running`` with the resolved config from the start, the final status when the run ends:
``completed``, ``failed``, ``diverged``, ``interrupted``), checkpoint.pt, and the folder lock
``.trpo-bench.lock`` holding ``pid N on host H`` while a process writes the folder (emptied when
it ends normally). Snakemake writes each job's output to ``logs/train/<env>/<variant>/seed<N>.log``.

This module only reads those files: it takes no lock (not the folder's flock, which would make
a starting run fail, nor the MLflow store's), never opens MLflow and never waits, so it is safe
while Snakemake runs locally or on SLURM. Every decision is a small pure function
(:func:`decide_state`, :func:`seconds_per_iteration`, :func:`remaining_seconds`,
:func:`grid_eta`) that tests feed directly; :func:`collect` reads the files into
:class:`RunStatus` records; :func:`render_plain`, :func:`render_rich` and :func:`to_json` show
them. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from trpo_bench.config import ConfigError
from trpo_bench.grid import env_slug, expand_grid, run_config
from trpo_bench.run.files import CHECKPOINT_FILE, LOCK_FILE, PROGRESS_FILE, SUMMARY_FILE
from trpo_bench.run.pace import (
    format_duration,
    remaining_seconds,
    seconds_per_iteration,
)

# What each state means, in the order the grid line counts them.
STATES: dict[str, str] = {
    "running": "a process is writing the run (its writer is alive, or it wrote within the "
    "stale window)",
    "stalled": "started, not finished, and nothing written for longer than the stale window "
    "while no live writer is seen (killed without a final status: out of memory, a SLURM hard "
    "kill, a lost node); starting snakemake again resumes it from its checkpoint",
    "pending": "not started: no run files and no job log",
    "done": "completed its planned iterations (summary.json status completed)",
    "failed": "ended with an error: summary.json status failed, or, as Snakemake deletes a "
    "failed job's outputs, a traceback or `trpo-bench: error:` at the end of the job's log",
    "diverged": "stopped because its policy became non-finite (status diverged)",
    "interrupted": "stopped by SIGTERM/SIGINT or a time limit after checkpointing (status "
    "interrupted, or the CLI's line saying so at the end of the job's log); starting snakemake "
    "again resumes it",
}
# summary.json's final statuses (trpo_bench.run.trainer.train) -> the state shown.
FINAL_STATES = {
    "completed": "done",
    "failed": "failed",
    "diverged": "diverged",
    "interrupted": "interrupted",
}
# States whose runs still have time to go (the grid's time left counts these).
ACTIVE_STATES = ("running", "pending")
STALE_AFTER_S = 600.0  # at least this long without a write before a run counts as stalled
STALE_ITERATIONS = 3.0  # ... and at least this many of its own iterations

_LOCK_LINE = re.compile(r"pid (\d+) on host (\S+)")
_SEED_DIR = re.compile(r"seed(\d+)")


# --- the pure parts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """The process named in a run folder's lock file."""

    pid: int
    host: str


def parse_lock(text: str) -> Writer | None:
    """The writer named by ``.trpo-bench.lock``'s text (``pid N on host H``); None if empty."""
    match = _LOCK_LINE.search(text or "")
    return Writer(int(match.group(1)), match.group(2)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    except OSError:
        return False
    return True


def writer_alive(
    writer: Writer | None, this_host: str, alive: Callable[[int], bool] = pid_alive
) -> bool | None:
    """True/False when the lock's writer runs on this host (its pid is checked); None when
    there is no writer or it is on another host (a SLURM node: the files' ages decide)."""
    if writer is None or writer.host != this_host:
        return None
    return alive(writer.pid)


def stale_after(per_iteration: float | None, minimum: float = STALE_AFTER_S) -> float:
    """How long a run may go without writing before it counts as stalled: ``minimum``, or
    :data:`STALE_ITERATIONS` of its own iterations if longer (a paper-scale iteration takes
    minutes)."""
    return max(minimum, STALE_ITERATIONS * per_iteration) if per_iteration else minimum


def decide_state(
    summary_status: str | None,
    started: bool,
    alive: bool | None,
    age_s: float | None,
    stale_after_s: float,
    relaunched: bool = False,
    logged: str | None = None,
) -> str:
    """A run's state (:data:`STATES`) from what its files say.

    ``summary_status``: summary.json's ``status`` (None: no readable summary); ``started``:
    progress.csv, the job's log or a checkpoint exists; ``alive``: :func:`writer_alive`;
    ``age_s``: seconds since the newest write of progress.csv, summary.json or the log;
    ``relaunched``: the lock was taken after the summary was written (a rerun of a finished
    run is starting); ``logged``: how the job's log says it ended (:func:`log_outcome`), which
    decides when summary.json has no final status: Snakemake deletes a failed job's outputs,
    summary.json and progress.csv included, so a failed or interrupted job of a grid leaves
    only its log, its checkpoint and the folder lock.
    """
    final = FINAL_STATES.get(summary_status or "")
    if final is not None and not (alive and relaunched):
        return final
    if alive:
        return "running"
    if logged in ("failed", "interrupted"):
        return logged
    if summary_status is None and not started:
        return "pending"
    if alive is False:
        return "stalled"
    if age_s is not None and age_s <= stale_after_s:
        return "running"
    return "stalled"


def grid_eta(remaining: Iterable[float], cores: int) -> float:
    """The grid's time left on ``cores`` cores, one run per core: the sum of the runs' time
    left divided by the cores, and never less than the longest run's time left."""
    values = [max(float(r), 0.0) for r in remaining]
    if not values:
        return 0.0
    return max(sum(values) / max(int(cores), 1), max(values))


# --- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """A run of the grid config (``--configfile``), with its resolved budget."""

    env: str
    variant: str
    seed: int
    iterations: int
    steps_per_iter: int


@dataclass
class RunStatus:
    """Where one run stands."""

    env: str
    variant: str
    seed: int
    state: str
    done: int = 0  # iterations in progress.csv
    planned: int | None = None  # iterations the run is configured for
    train_return: float | None = None  # latest finite return_mean (training batch)
    eval_return: float | None = None  # latest finite eval_return_mean (evaluation protocol)
    env_steps: int = 0
    seconds_per_iter: float | None = None  # its own recent rate (or an estimate, see eta_from)
    remaining_s: float | None = None
    eta_from: str = ""  # "run" (its own iterations), "seeds" (its other seeds), "rates", ""
    age_s: float | None = None  # since its newest file write
    folder: str = ""
    note: str = ""
    steps_per_iter: int | None = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return self.variant.split("@", 1)[0]

    @property
    def fraction(self) -> float:
        return min(self.done / self.planned, 1.0) if self.planned else 0.0


def read_progress(path: Path) -> list[dict[str, str]]:
    """progress.csv's rows as text (empty if there is none); the file is replaced atomically by
    its writer, so a read sees a whole file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _last_finite(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    for row in reversed(rows):
        value = _number(row.get(key))
        if value is not None:
            return value
    return None


def _either(value: float | None, fallback: Any) -> float | None:
    return value if value is not None else _number(fallback)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def tail_lines(path: Path, size: int = 16384) -> list[str]:
    """The non-empty lines of the last ``size`` bytes of a (possibly long) log; [] if none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - size, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:.*)?")
_RESUMES = "the run resumes from its checkpoint when started again"  # trpo_bench.cli


def log_outcome(lines: Sequence[str]) -> str | None:
    """How a job's log says the job ended: ``failed`` (a traceback or ``trpo-bench: error:``
    last), ``interrupted`` (the CLI's line after SIGTERM/SIGINT or a time limit), else None
    (still running, or killed without a word)."""
    if not lines:
        return None
    last = lines[-1]
    if _RESUMES in last or last.startswith("interrupted:"):
        return "interrupted"
    if last.startswith("trpo-bench: error:"):
        return "failed"
    if _EXCEPTION_LINE.fullmatch(last) and any(ln.startswith("Traceback") for ln in lines):
        return "failed"
    return None


# The per-iteration line (RunRecorder._line): "[env method sN] 12/200 6% | ret 512.3 eval 600.1"
_PROGRESS_LINE = re.compile(r"\] (\d+)/(\d+) \d+% \| ret (\S+)(?: eval (\S+))?")


def log_progress(lines: Sequence[str]) -> tuple[int, int, float | None, float | None] | None:
    """(iterations done, planned, training return, evaluation return) from the last progress
    line of a job's log; for a run whose progress.csv Snakemake deleted after it failed."""
    for line in reversed(lines):
        match = _PROGRESS_LINE.search(line)
        if match:
            done, planned, ret, ev = match.groups()
            return int(done), int(planned), _number(ret), _number(ev)
    return None


def _cut(line: str, limit: int = 160) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _checkpoint_iterations(path: Path) -> int | None:
    """The planned iterations in checkpoint.pt's config (loads torch; used only when neither
    summary.json nor the grid config gives them). Read as data only: a file that is not is
    not run, and the row shows no total."""
    if not path.exists():
        return None
    try:
        from trpo_bench.run.checkpoint import load_data

        state = load_data(path, "checkpoint", "delete it to start the run over")
        return int(state["config"]["iterations"])
    except Exception:  # not data, damaged or foreign: the row shows no total
        return None


def log_path(results: Path, slug: str, variant: str, seed: int) -> Path:
    """Snakemake's log of a train job (``workflow/rules/train.smk``)."""
    return Path(results) / "logs" / "train" / slug / variant / f"seed{seed}.log"


def read_run(
    folder: Path,
    log: Path,
    *,
    env: str,
    variant: str,
    seed: int,
    plan: PlannedRun | None = None,
    now: float | None = None,
    this_host: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
    stale_after_s: float = STALE_AFTER_S,
) -> RunStatus:
    """One run's :class:`RunStatus` from its folder and its job log (either may be missing)."""
    now = time.time() if now is None else now
    this_host = socket.gethostname() if this_host is None else this_host
    notes = []
    summary: dict[str, Any] | None = None
    summary_path = folder / SUMMARY_FILE
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            if not isinstance(summary, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            summary = None
            notes.append(f"{SUMMARY_FILE} unreadable ({type(e).__name__})")
    try:
        rows = read_progress(folder / PROGRESS_FILE)
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        rows = []
        notes.append(f"{PROGRESS_FILE} unreadable ({type(e).__name__})")
    config = (summary or {}).get("config") or {}
    env = str(config.get("env") or (plan.env if plan else env))
    planned = config.get("iterations")
    planned = int(planned) if planned is not None else (plan.iterations if plan else None)
    if plan is not None and planned != plan.iterations:
        # The run's own config is what its process runs; snakemake reruns it with the grid's.
        notes.append(f"the grid plans {plan.iterations} iterations")
    done = len(rows) or int((summary or {}).get("iterations_done") or 0)
    log_tail = tail_lines(log)
    logged_progress = None if rows else log_progress(log_tail)
    if logged_progress is not None:  # progress.csv was deleted (a failed job's output)
        done = max(done, logged_progress[0])
        planned = planned if planned is not None else logged_progress[1]
    if planned is None and (folder / CHECKPOINT_FILE).exists():
        planned = _checkpoint_iterations(folder / CHECKPOINT_FILE)
    steps_per_iter = config.get("steps_per_iter") or (plan.steps_per_iter if plan else None)

    walls = [w for w in (_number(r.get("wall_time_s")) for r in rows) if w is not None]
    per_iter = seconds_per_iteration(walls)
    env_steps = _number(rows[-1].get("env_steps")) if rows else None
    lock_text = ""
    with contextlib.suppress(OSError):
        lock_text = (folder / LOCK_FILE).read_text(encoding="utf-8", errors="replace")
    writer = parse_lock(lock_text)
    is_alive = writer_alive(writer, this_host, alive)
    times = [_mtime(p) for p in (folder / PROGRESS_FILE, summary_path, log)]
    newest = max((t for t in times if t is not None), default=None)
    age = now - newest if newest is not None else None
    summary_time, lock_time = _mtime(summary_path), _mtime(folder / LOCK_FILE)
    relaunched = bool(summary_time and lock_time and lock_time > summary_time)
    status = (summary or {}).get("status")
    if status is not None and not rows:
        notes.append(f"no {PROGRESS_FILE}")
    has_checkpoint = (folder / CHECKPOINT_FILE).exists()
    started = bool(rows) or log.exists() or summary is not None or has_checkpoint
    summary = summary or {}
    state = decide_state(
        status,
        started,
        is_alive,
        age,
        stale_after(per_iter, stale_after_s),
        relaunched,
        log_outcome(log_tail),
    )
    if state in ("running", "stalled") and writer is not None:
        gone = " (gone)" if is_alive is False else ""
        notes.append(f"pid {writer.pid} on {writer.host}{gone}")
    if state == "stalled":
        notes.append(f"nothing written for {format_duration(age)}")
    if state in ("failed", "diverged", "interrupted", "stalled") and log_tail:
        notes.append(f"log: {_cut(log_tail[-1])}")
    remaining = None
    if state == "running" or (state == "pending" and planned is not None):
        remaining = remaining_seconds(done, planned, per_iter)
    elif state == "done":
        remaining = 0.0
    return RunStatus(
        env=env,
        variant=variant,
        seed=seed,
        state=state,
        done=done,
        planned=planned,
        # The last finite value of progress.csv, else summary.json's (progress.csv deleted).
        train_return=_either(
            _last_finite(rows, "return_mean"),
            summary.get("final_return", logged_progress and logged_progress[2]),
        ),
        eval_return=_either(
            _last_finite(rows, "eval_return_mean"),
            summary.get("final_eval_return", logged_progress and logged_progress[3]),
        ),
        env_steps=int(_either(env_steps, summary.get("env_steps")) or 0),
        seconds_per_iter=per_iter,
        remaining_s=remaining,
        eta_from="run" if remaining is not None and per_iter is not None else "",
        age_s=age,
        folder=str(folder),
        note="; ".join(notes),
        steps_per_iter=int(steps_per_iter) if steps_per_iter else None,
    )


# --- the grid -----------------------------------------------------------------------------------


def merge_config(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` read on top of ``base`` as Snakemake reads ``--configfile`` files: mappings
    merged key by key, everything else (lists too) replaced."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = value
    return base


def default_config_file() -> Path:
    """The Snakefile's ``configfile:`` (config/config.yaml in the checkout)."""
    return Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def load_grid_config(configfiles: Sequence[str | Path], base: Path | None = None) -> dict:
    """The grid config Snakemake would use: ``base`` (default :func:`default_config_file`, if
    it exists) with ``configfiles`` read on top, in order. Raises a ConfigError naming a file
    that cannot be read."""
    import yaml

    base = default_config_file() if base is None else base
    paths = ([base] if base.exists() else []) + [Path(p) for p in configfiles]
    cfg: dict[str, Any] = {}
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"config file {str(path)!r} cannot be read ({e})") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {str(path)!r} is not a mapping of keys")
        merge_config(cfg, data)
    return cfg


def planned_runs(cfg: Mapping[str, Any]) -> list[PlannedRun]:
    """The grid's runs with their resolved iterations and steps per iteration (resolving a
    config imports the method registry, hence torch)."""
    for key in ("envs", "methods", "seeds", "preset"):
        if key not in cfg:
            raise ConfigError(f"the grid config has no {key!r} (is it a grid file of config/?)")
    resolved: dict[tuple[str, str], tuple[int, int]] = {}
    plans = []
    for run in expand_grid(cfg):
        key = (run.env, run.variant)
        if key not in resolved:
            c = run_config(run, cfg["preset"])
            resolved[key] = (int(c.iterations), int(c.steps_per_iter))
        iterations, steps = resolved[key]
        plans.append(PlannedRun(run.env, run.variant, run.seed, iterations, steps))
    return plans


def scan_runs(results: Path) -> list[tuple[str, str, int, Path]]:
    """Every run folder under ``results/runs`` as (env slug, variant, seed, folder)."""
    found = []
    runs = Path(results) / "runs"
    if not runs.is_dir():
        return found
    for env_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        for variant_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            for seed_dir in variant_dir.iterdir():
                match = _SEED_DIR.fullmatch(seed_dir.name)
                if match and seed_dir.is_dir():
                    found.append((env_dir.name, variant_dir.name, int(match.group(1)), seed_dir))
    return sorted(found, key=lambda f: (f[0], f[1], f[2]))


def fill_estimates(
    runs: Sequence[RunStatus], rate: Callable[[RunStatus], tuple[float, float] | None]
) -> None:
    """Give runs that have not measured their own speed yet (pending, or running before their
    first iteration) an estimated time left: the median seconds per iteration that the same env
    and variant's other seeds measured (done, running or failed alike), else ``rate(run)``
    (env steps per second, and the fixed cost of a job, which a pending run has still to pay)
    and its steps per iteration."""
    measured: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if r.seconds_per_iter:  # measured from its own rows, whatever its state
            measured.setdefault((r.env, r.variant), []).append(r.seconds_per_iter)
    for r in runs:
        if r.state not in ACTIVE_STATES or r.remaining_s is not None or r.planned is None:
            continue
        peers = measured.get((r.env, r.variant))
        if peers:
            r.remaining_s = remaining_seconds(r.done, r.planned, statistics.median(peers))
            r.eta_from = "seeds"
            continue
        known = rate(r)
        if known and known[0] > 0 and r.steps_per_iter:
            steps_per_s, fixed_s = known
            left = remaining_seconds(r.done, r.planned, r.steps_per_iter / steps_per_s)
            r.remaining_s = (left or 0.0) + (fixed_s if r.state == "pending" else 0.0)
            r.eta_from = "rates"


def measured_rate(r: RunStatus) -> tuple[float, float] | None:
    """The run's (env, method) training rate (env steps per CPU second) and a job's fixed cost
    (seconds) from ``trpo_bench/presets/rates.yaml``, as the grid's estimate before it runs;
    None if there is none."""
    try:
        from trpo_bench.analysis.estimate import load_rates
        from trpo_bench.envs.registry import env_spec

        rates = _RATES.setdefault("rates", load_rates())
        return rates.rate(r.env, r.method, env_spec(r.env).family), rates.fixed_cost_s
    except Exception:
        return None


_RATES: dict[str, Any] = {}


def collect(
    results: Path,
    plans: Sequence[PlannedRun] = (),
    *,
    now: float | None = None,
    this_host: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
    stale_after_s: float = STALE_AFTER_S,
    rate: Callable[[RunStatus], tuple[float, float] | None] = measured_rate,
) -> list[RunStatus]:
    """Every run of ``results``: the grid's planned runs in grid order (pending if nothing of
    theirs is there), then run folders the grid does not name."""

    results = Path(results)
    now = time.time() if now is None else now
    folders = {(slug, variant, seed): path for slug, variant, seed, path in scan_runs(results)}
    order: list[tuple[tuple[str, str, int], PlannedRun | None]] = [
        ((env_slug(p.env), p.variant, p.seed), p) for p in plans
    ]
    known = {key for key, _ in order}
    order += [(key, None) for key in folders if key not in known]
    out = []
    for (slug, variant, seed), plan in order:
        folder = folders.get(
            (slug, variant, seed), results / "runs" / slug / variant / f"seed{seed}"
        )
        out.append(
            read_run(
                folder,
                log_path(results, slug, variant, seed),
                env=plan.env if plan else slug,
                variant=variant,
                seed=seed,
                plan=plan,
                now=now,
                this_host=this_host,
                alive=alive,
                stale_after_s=stale_after_s,
            )
        )
    fill_estimates(out, rate)
    return out


@dataclass(frozen=True)
class GridStatus:
    """The grid line: runs per state and the time left."""

    counts: dict[str, int]
    runs: int
    remaining_s: float  # sum over running and pending runs with an estimate
    eta_s: float  # :func:`grid_eta` on ``cores``
    cores: int
    unestimated: int  # running or pending runs without an estimate


def summarize_grid(runs: Sequence[RunStatus], cores: int) -> GridStatus:
    counts = {s: sum(r.state == s for r in runs) for s in STATES}
    left = [r.remaining_s for r in runs if r.state in ACTIVE_STATES and r.remaining_s is not None]
    unknown = sum(r.state in ACTIVE_STATES and r.remaining_s is None for r in runs)
    return GridStatus(
        {s: n for s, n in counts.items() if n},
        len(runs),
        sum(left),
        grid_eta(left, cores),
        cores,
        unknown,
    )


# --- showing it -----------------------------------------------------------------------------


def _ret(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _iterations(r: RunStatus) -> str:
    return f"{r.done}/{r.planned if r.planned is not None else '?'}"


def _left(r: RunStatus) -> str:
    if r.state == "done":
        return "0s"
    if r.state not in ACTIVE_STATES:
        return "-"
    text = format_duration(r.remaining_s)
    return f"~{text}" if r.eta_from in ("seeds", "rates") else text


def text_bar(fraction: float, width: int = 20) -> str:
    """``[#######.............]`` filled to ``fraction`` (0..1)."""
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def grid_lines(grid: GridStatus, cores_given: bool) -> list[str]:
    """The lines under the table: the counts and the grid's time left, with how it is worked
    out."""
    counts = ", ".join(f"{n} {s}" for s, n in grid.counts.items())
    lines = [f"{grid.runs} runs: {counts or 'none'}"]
    if not any(s in grid.counts for s in ACTIVE_STATES):
        lines.append("time left: none (no run is running or pending)")
    else:
        core_word = "core" if grid.cores == 1 else "cores"
        text = (
            f"time left: about {format_duration(grid.eta_s)} on {grid.cores} {core_word} (the "
            f"runs' {format_duration(grid.remaining_s)} left / {grid.cores}, at least the "
            "longest run's)"
        )
        if grid.unestimated:
            text += f"; {grid.unestimated} run(s) without an estimate not counted"
        lines.append(text)
        if not cores_given:
            lines.append(
                "note: --cores 1 assumed; pass the --cores (or jobs at once) given to snakemake"
            )
    if any(s in grid.counts for s in ("failed", "diverged", "interrupted", "stalled")):
        lines.append(
            "note: failed, diverged, interrupted and stalled runs have no time left counted; "
            "starting snakemake again reruns them (a run resumes from its checkpoint)"
        )
    return lines


def run_line(r: RunStatus) -> str:
    """One run as one plain line."""
    pct = f"{100 * r.fraction:3.0f}%" if r.planned else "  ?%"
    text = (
        f"{r.env} {r.variant} seed{r.seed} {text_bar(r.fraction)} {_iterations(r)} {pct} "
        f"ret {_ret(r.train_return)} eval {_ret(r.eval_return)} {r.state} left {_left(r)}"
    )
    return text + (f" ({r.note})" if r.note else "")


def render_plain(
    runs: Sequence[RunStatus], grid: GridStatus, cores_given: bool, stream: TextIO
) -> None:
    for r in runs:
        print(run_line(r), file=stream)
    for line in grid_lines(grid, cores_given):
        print(line, file=stream)


STATE_STYLES = {
    "running": "bold cyan",
    "stalled": "bold yellow",
    "pending": "dim",
    "done": "green",
    "failed": "bold red",
    "diverged": "bold magenta",
    "interrupted": "yellow",
}


def render_rich(
    runs: Sequence[RunStatus],
    grid: GridStatus,
    cores_given: bool,
    stream: TextIO,
    title: str = "",
    width: int | None = None,
) -> None:
    """The runs as a ``rich`` table with a progress bar per run. On a narrow terminal the bar
    is shorter and the seconds-per-iteration column is left out; the method names wrap."""
    from rich import box
    from rich.console import Console
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False, width=width)
    wide = console.width >= 130
    bar_width = 20 if wide else 10
    cells = {
        "env": [r.env for r in runs],
        "method": [r.variant for r in runs],
        "seed": [str(r.seed) for r in runs],
        "progress": [""] * len(runs),
        "iter": [_iterations(r) for r in runs],
        "return": [_ret(r.train_return) for r in runs],
        "eval": [_ret(r.eval_return) for r in runs],
        "state": [r.state for r in runs],
        "s/iter": [
            format_duration(r.seconds_per_iter) if r.seconds_per_iter else "-" for r in runs
        ],
        "left": [_left(r) for r in runs],
    }
    if not wide:
        del cells["s/iter"]
    table = Table(title=title or None, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, values in cells.items():
        fits = max([len(name), *(len(v) for v in values)])
        if name == "method":
            table.add_column(name, overflow="fold", min_width=min(fits, 16))
        else:
            shown = bar_width if name == "progress" else fits
            right = name not in ("env", "progress", "state")
            table.add_column(
                name, justify="right" if right else "left", no_wrap=True, min_width=shown
            )
    for i, r in enumerate(runs):
        row: list[Any] = [cells[name][i] for name in cells]
        row[list(cells).index("progress")] = ProgressBar(
            total=float(r.planned or 1),
            completed=float(r.done),
            width=bar_width,
            complete_style="cyan",
            finished_style="green",
        )
        row[list(cells).index("state")] = Text(r.state, style=STATE_STYLES.get(r.state, ""))
        table.add_row(*row)
    console.print(table)
    for r in runs:
        if r.note and r.state not in ("done", "pending"):
            console.print(
                Text(f"{r.env} {r.variant} seed{r.seed}: {r.note}", style="dim"), soft_wrap=True
            )
    for line in grid_lines(grid, cores_given):
        console.print(Text(line), soft_wrap=True)


def to_json(runs: Sequence[RunStatus], grid: GridStatus) -> str:
    """The runs and the grid line for scripts (unknown numbers are null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    records = [{**asdict(r), "method": r.method} for r in runs]
    return json.dumps(clean({"runs": records, "grid": asdict(grid)}), indent=2)


# --- the command ------------------------------------------------------------------------------


def check_results_dir(results: Path, have_grid: bool) -> None:
    """Raise a ConfigError (one line) unless ``results`` looks like a grid's results root."""
    hint = (
        "give a grid's results root (the `results` key of its config: results, results/paper, "
        "...), which holds runs/<env>/<variant>/seed<N>/"
    )
    if not results.exists():
        raise ConfigError(f"results folder {str(results)!r} does not exist; {hint}")
    if not results.is_dir():
        raise ConfigError(f"results folder {str(results)!r} is not a folder; {hint}")
    if not have_grid and not (results / "runs").is_dir():
        raise ConfigError(
            f"{str(results)!r} holds no runs/ folder, so it is not a grid's results root (or "
            f"no run has started yet: add --configfile to list the planned runs); {hint}"
        )


def run_status(args: Any, stream: TextIO | None = None) -> int:
    """``trpo-bench status``: parse-free entry point for the CLI's namespace (results,
    configfile, cores, plain, json, only, stale_after)."""
    stream = sys.stdout if stream is None else stream
    if args.cores is not None and args.cores < 1:
        raise ConfigError(f"--cores {args.cores} is not allowed (allowed: an integer >= 1)")
    if args.stale_after <= 0:
        raise ConfigError(f"--stale-after {args.stale_after} is not allowed (allowed: > 0 s)")
    only = [s.strip() for s in (args.only or "").split(",") if s.strip()]
    bad = [s for s in only if s not in STATES]
    if bad:
        raise ConfigError(f"--only {', '.join(bad)} is not a state (allowed: {', '.join(STATES)})")
    plans: list[PlannedRun] = []
    cfg: dict[str, Any] = {}
    configfiles = list(args.configfile)
    if configfiles and not args.results and Path(configfiles[-1]).is_dir():
        # `status --configfile a.yaml results`: nargs="+" took the results folder too
        args.results = configfiles.pop()
    if configfiles:
        cfg = load_grid_config(configfiles)
        plans = planned_runs(cfg)
    if args.results:
        results = Path(args.results)
    elif cfg.get("results"):
        results = Path(str(cfg["results"]))
    else:
        raise ConfigError(
            "no results folder given: `trpo-bench status RESULTS_DIR` (e.g. results), or "
            "--configfile FILE to read it from the grid's `results`"
        )
    check_results_dir(results, bool(plans))
    runs = collect(results, plans, stale_after_s=args.stale_after)
    grid = summarize_grid(runs, args.cores or 1)
    shown = [r for r in runs if not only or r.state in only]
    try:
        if args.json:
            print(to_json(shown, grid), file=stream)
        elif args.plain or not stream.isatty():
            render_plain(shown, grid, args.cores is not None, stream)
        else:
            title = f"trpo-bench: {results}"
            render_rich(shown, grid, args.cores is not None, stream, title=title)
        stream.flush()
    except BrokenPipeError:  # `trpo-bench status ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    return 0
