"""How long a grid will take, estimated from measured training rates, before it runs.

A training job costs ``iterations x steps_per_iter / rate + evaluations x evaluation +
fixed_cost`` CPU seconds: ``rate`` is the (env, method)'s training speed in env steps per CPU
second, ``evaluation`` the CPU seconds of one run of the evaluation protocol on the env (every
``eval_every`` iterations and after the last), and ``fixed_cost`` what every job pays beside its
training loop (interpreter start, imports, the MLflow run). All are measured, never guessed:
``trpo_bench/presets/rates.yaml`` holds them, with how and where they were measured (``python
benchmarks/bench_workflow.py estimate`` measures them again). A pair the table does not list
falls back to its env family's rate for that method, then to the family's ``default``; an env
without an evaluation figure takes its family's.

A job given ``threads`` cores steps its envs in that many env workers (``env_workers``,
``trpo_bench.envs.workers``; at most its ``num_envs``), which divide the share of its training
time spent stepping envs: its wall time is ``training x ((1 - share) + share / workers)`` plus
its evaluations and fixed cost, where ``share`` is measured per family and method (the
``env_share`` table of the rates file, from ``benchmarks/bench_workers.py``'s K = 1 against
K = 2). The grid's wall time on N cores is worked out by scheduling its jobs longest first
(as the train rule's ``priority``, :func:`job_priority`, makes Snakemake start them), each on
as many cores as its ``threads``, so it is at least the longest job.

On a cluster whose jobs have a time limit (the grid's ``max_job_minutes``, e.g. a SLURM
partition's), a run longer than the limit runs as several jobs (segments), each stopping before
the limit and the next resuming from its checkpoint (``trpo_bench.run.timelimit``);
:func:`plan_segments` works out how many the longest run needs and so how many times the
workflow's train rule must be retried (:func:`train_retries`).

Importing this module does not import torch (the Snakefile's jobs re-read it on cluster nodes);
only resolving a run's budget through ``trpo_bench.resolve.build_config`` does, and the
Snakefile's main process has loaded it by then to check the grid.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from trpo_bench.grid import Run, resources_for, run_config

RATES_FILE = "presets/rates.yaml"
# What one cluster job spends before its run trains (Snakemake's job start, imports, the MLflow
# run): measured 7 s through the one-node SLURM; counted generously.
JOB_START_S = 20.0
# A job may run this much longer than estimated before its segment plan falls short (the rates
# are of this machine; a cluster node may be slower).
SEGMENT_SAFETY = 1.5
_BUDGETS: dict[tuple[Any, ...], RunWork] = {}
LONG_WALL_S = 2 * 3600  # above this wall time the message says which grid is the quick one
QUICK_COMMAND = "snakemake --cores all --configfile config/quick.yaml"


@dataclass(frozen=True)
class Rates:
    """Measured training rates (env steps per CPU second), the CPU seconds of one evaluation
    and the fixed cost of one job."""

    fixed_cost_s: float
    envs: Mapping[str, Mapping[str, float]]  # env id -> method -> rate
    families: Mapping[str, Mapping[str, float]]  # family -> method (or "default") -> rate
    evaluation_s: Mapping[str, float] = field(default_factory=dict)  # env id or family -> s
    env_share: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # family -> method

    def share(self, method: str, family: str) -> float:
        """The share of a one-thread training iteration that env workers divide (the family's
        figure for the method, else its default, else 0: no speed-up assumed)."""
        fam = self.env_share.get(family, {})
        return float(fam.get(method, fam.get("default", 0.0)))

    def evaluation(self, env: str, family: str) -> float:
        """CPU seconds of one evaluation on ``env`` (its own figure, else its family's, else
        0: an evaluation is a small share of a run on every env measured)."""
        return float(self.evaluation_s.get(env, self.evaluation_s.get(family, 0.0)))

    def rate(self, env: str, method: str, family: str) -> float:
        """The (env, method)'s rate, else its family's rate for the method, else the family's
        default."""
        if method in self.envs.get(env, {}):
            return float(self.envs[env][method])
        fam = self.families.get(family, {})
        if method in fam:
            return float(fam[method])
        if "default" in fam:
            return float(fam["default"])
        raise KeyError(f"{RATES_FILE}: no rate for {env} / {method} nor a default for {family!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Rates:
        return cls(
            fixed_cost_s=float(data["fixed_cost_s"]),
            envs={e: dict(m or {}) for e, m in (data.get("envs") or {}).items()},
            families={f: dict(m or {}) for f, m in (data.get("families") or {}).items()},
            evaluation_s={k: float(v) for k, v in (data.get("evaluation_cpu_s") or {}).items()},
            env_share={f: dict(m or {}) for f, m in (data.get("env_share") or {}).items()},
        )


def load_rates(path: str | Path | None = None) -> Rates:
    """The rates table shipped with the package (or the YAML file at ``path``)."""
    if path is None:
        text = resources.files("trpo_bench").joinpath(RATES_FILE).read_text()
    else:
        text = Path(path).read_text()
    return Rates.from_mapping(yaml.safe_load(text))


@dataclass(frozen=True)
class RunWork:
    """What one run does: its env steps and its evaluations."""

    env_steps: int
    evaluations: int = 0
    num_envs: int = 1  # the most env workers the run can use


@dataclass(frozen=True)
class JobEstimate:
    run: Run
    family: str
    env_steps: int
    rate: float  # env steps per CPU second
    cpu_s: float  # env_steps / rate + evaluations x one evaluation + the fixed cost
    threads: int
    wall_s: float  # on its threads: the env stepping divided among its env workers

    @property
    def env_workers(self) -> int:
        return self.threads


@dataclass(frozen=True)
class GridEstimate:
    jobs: tuple[JobEstimate, ...]

    @property
    def cpu_s(self) -> float:
        return sum(j.cpu_s for j in self.jobs)

    @property
    def longest_s(self) -> float:
        """The longest job's wall time on its threads."""
        return max((j.wall_s for j in self.jobs), default=0.0)

    def cpu_s_by_family(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for j in self.jobs:
            totals[j.family] = totals.get(j.family, 0.0) + j.cpu_s
        return totals

    def wall_s(self, cores: int) -> float:
        """Wall time on ``cores`` cores, the longest jobs started first."""
        return schedule_wall_s([(j.wall_s, j.threads) for j in self.jobs], cores)


def schedule_wall_s(jobs: Sequence[tuple[float, int]], cores: int) -> float:
    """Makespan of (seconds, threads) jobs scheduled longest first on ``cores`` cores: each job
    starts when ``threads`` cores are free and holds them until it ends."""
    cores = max(int(cores), 1)
    free = [0.0] * cores  # the time each core becomes free (a heap)
    end = 0.0
    for seconds, threads in sorted(jobs, key=lambda j: -j[0]):
        taken = [heapq.heappop(free) for _ in range(min(max(threads, 1), cores))]
        done = max(taken) + seconds
        for _ in taken:
            heapq.heappush(free, done)
        end = max(end, done)
    return end


def job_limit_minutes(cfg: Mapping[str, Any], env: str) -> int:
    """The time limit of one training job on ``env``, minutes: its ``resources`` runtime, at
    most the grid's ``max_job_minutes`` (the partition's limit) when that is set."""
    runtime = int(resources_for(cfg, env)["runtime"])
    cap = cfg.get("max_job_minutes")
    return min(runtime, int(cap)) if cap else runtime


def segments_needed(seconds: float, limit_s: float) -> int:
    """Jobs (segments) of at most ``limit_s`` that a run of ``seconds`` needs, each losing
    :data:`JOB_START_S` to its start and the time limit's margin to its end, with the run
    allowed :data:`SEGMENT_SAFETY` times its estimate."""
    from trpo_bench.run.timelimit import TimeLimit

    usable = limit_s - JOB_START_S - TimeLimit(limit_s).margin_s
    if usable <= 0:
        return 0  # a job cannot train at all: plan_segments reports it
    return max(1, math.ceil(SEGMENT_SAFETY * seconds / usable))


@dataclass(frozen=True)
class SegmentPlan:
    """How the grid's longest run fits the jobs' time limits."""

    longest: JobEstimate | None
    limit_s: float  # the longest run's job time limit
    segments: int  # jobs the longest run needs (0: its limit leaves no time to train)
    retries: int  # the train rule's retries: the most segments any run needs, less one, + 3

    @property
    def fits(self) -> bool:
        return self.segments == 1


def plan_segments(cfg: Mapping[str, Any], estimate: GridEstimate) -> SegmentPlan:
    """Segments of every run under its job's time limit (:func:`job_limit_minutes`); the plan
    names the longest run and the retries that let the run needing the most segments finish."""
    if not estimate.jobs:
        return SegmentPlan(None, 0.0, 1, 0)
    most = 1
    for j in estimate.jobs:
        n = segments_needed(j.wall_s, 60.0 * job_limit_minutes(cfg, j.run.env))
        most = max(most, n) if n else most
    longest = max(estimate.jobs, key=lambda j: j.wall_s)
    limit_s = 60.0 * job_limit_minutes(cfg, longest.run.env)
    segments = segments_needed(longest.wall_s, limit_s)
    # Three more than planned (a slow node, a preempted job, a node failure); none where every
    # run fits in one job (a failing run is then not retried).
    retries = most + 2 if most > 1 else 0
    return SegmentPlan(longest, limit_s, segments, retries)


def train_retries(cfg: Mapping[str, Any], runs: Sequence[Run]) -> int:
    """The train rule's ``retries`` for the grid (:func:`plan_segments`); 0 if the grid cannot
    be estimated (its line says why)."""
    try:
        return plan_segments(cfg, estimate_grid(cfg, runs)).retries
    except Exception:
        return 0


def segment_line(cfg: Mapping[str, Any], plan: SegmentPlan) -> str | None:
    """One line on the longest run against its job's time limit: whether it fits, else how
    many jobs it runs as and the retries that allow them; None for a short grid without
    ``max_job_minutes``."""
    if plan.longest is None:
        return None
    cap = cfg.get("max_job_minutes")
    where = (
        f"max_job_minutes={cap}, the partition's limit"
        if cap and plan.limit_s <= 60 * int(cap)
        else "its runtime in the grid's resources"
    )
    run = plan.longest.run
    name = f"{run.env} {run.variant} seed {run.seed}"
    head = (
        f"trpo-bench: the longest job ({name}) about {format_hours(plan.longest.wall_s)} against "
        f"a job time limit of {format_hours(plan.limit_s)} ({where})"
    )
    if plan.segments == 0:
        return (
            f"{head}: too short to train in (a job spends about {JOB_START_S:.0f} s starting); "
            "raise max_job_minutes or the runtime"
        )
    if plan.fits and plan.retries == 0:
        if not cap and plan.longest.wall_s < LONG_WALL_S:
            return None
        hint = "" if cap else "; on a cluster, set max_job_minutes to your partition's limit"
        return f"{head}: fits in one job{hint}."
    return (
        f"{head}: runs as up to {plan.segments} jobs in a row, each resuming from the last "
        f"one's checkpoint; the train rule retries up to {plan.retries} times."
    )


def evaluations(iterations: int, eval_every: int) -> int:
    """Evaluations in a run: every ``eval_every`` iterations and after the last
    (``trpo_bench.run.evaluation.is_due``)."""
    if eval_every <= 0:
        return 1
    return iterations // eval_every + (1 if iterations % eval_every else 0)


def run_work(run: Run, preset: str) -> RunWork:
    """One run's env steps (iterations x steps_per_iter) and evaluations, from its resolved
    training config."""
    cfg = run_config(run, preset)
    steps = int(cfg.iterations) * int(cfg.steps_per_iter)
    evals = evaluations(int(cfg.iterations), int(cfg.eval_every))
    return RunWork(steps, evals, int(cfg.num_envs))


def estimate_grid(
    cfg: Mapping[str, Any],
    runs: Sequence[Run],
    rates: Rates | None = None,
    budget: Callable[[Run], RunWork] | None = None,
    families: Mapping[str, str] | None = None,
) -> GridEstimate:
    """Every job's estimated CPU time. ``budget`` (run -> its env steps and evaluations)
    defaults to the run's resolved config; ``families`` (env id -> family) to the env
    registry."""
    rates = rates or load_rates()
    if families is None:
        from trpo_bench.envs.registry import env_spec

        families = {r.env: env_spec(r.env).family for r in runs}
    if budget is None:

        def budget(run: Run) -> RunWork:
            # Resolved once per process for each (env, variant, settings): the Snakefile's
            # estimate and the train rule's retries ask for the same runs.
            key = (run.env, run.method, run.settings, cfg["preset"])
            if key not in _BUDGETS:
                _BUDGETS[key] = run_work(run, cfg["preset"])
            return _BUDGETS[key]

    jobs = []
    for run in runs:
        family = families[run.env]
        work = budget(run)
        rate = rates.rate(run.env, run.method, family)
        training_s = work.env_steps / rate
        other_s = work.evaluations * rates.evaluation(run.env, family) + rates.fixed_cost_s
        threads = _threads(cfg, run.env)
        share = rates.share(run.method, family)
        workers = max(1, min(threads, work.num_envs))
        wall_s = training_s * ((1.0 - share) + share / workers) + other_s
        jobs.append(
            JobEstimate(run, family, work.env_steps, rate, training_s + other_s, threads, wall_s)
        )
    return GridEstimate(tuple(jobs))


def job_priorities(cfg: Mapping[str, Any], runs: Sequence[Run]) -> dict[Run, int]:
    """The train rule's Snakemake ``priority`` of each run: its job's estimated wall seconds,
    so that the longest jobs start first (the schedule :meth:`GridEstimate.wall_s` assumes);
    empty (every priority 0) where the grid cannot be estimated."""
    try:
        jobs = estimate_grid(cfg, runs).jobs
    except Exception:
        return {}
    return {j.run: max(0, round(j.wall_s)) for j in jobs}


def _threads(cfg: Mapping[str, Any], env: str) -> int:
    try:
        return resources_for(cfg, env)["threads"]
    except Exception:  # no resources entry: the grid check says so; count one core
        return 1


def format_hours(seconds: float) -> str:
    """A duration for people: ``45 s``, ``17 min``, ``6.5 h``, ``45 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 10 else f"{hours:,.0f} h"


def format_cpu_hours(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 100:
        return f"{hours:,.0f}"
    return f"{hours:.1f}" if hours >= 1 else f"{hours:.2f}"


def summary_lines(
    estimate: GridEstimate, cores: int, *, jobs_at_once: int | None = None, default_grid: bool
) -> list[str]:
    """One or two lines for the user before a grid runs: the number of training jobs, its
    CPU-hours, the longest job and the wall time on ``cores`` cores (or, on a cluster, with
    ``jobs_at_once`` jobs at a time); a long grid is named for what it is."""
    slots = jobs_at_once or cores
    if jobs_at_once:
        where = f"with {slots} jobs at once"
    else:
        where = f"on {cores} core" + ("s" if cores != 1 else "")
    by_family = estimate.cpu_s_by_family()
    parts = ""
    if len(by_family) > 1:
        parts = " (" + ", ".join(f"{f} {format_cpu_hours(s)}" for f, s in by_family.items()) + ")"
    wall = estimate.wall_s(slots)
    lines = [
        f"trpo-bench: {len(estimate.jobs)} training jobs, estimated "
        f"{format_cpu_hours(estimate.cpu_s)} CPU-hours{parts} from measured rates "
        f"(trpo_bench/{RATES_FILE}); the longest job {format_hours(estimate.longest_s)}; "
        f"wall time {where}: about {format_hours(wall)}."
    ]
    if wall > LONG_WALL_S:
        what = (
            "This is the full comparison (config/config.yaml, the paper's scale)"
            if default_grid
            else "This grid runs for hours"
        )
        lines.append(
            f"trpo-bench: {what}; the quick look (under 30 minutes on 2 cores) is "
            f"`{QUICK_COMMAND}`."
        )
    return lines


def estimate_lines(
    cfg: Mapping[str, Any],
    runs: Sequence[Run],
    cores: int,
    *,
    jobs_at_once: int | None = None,
    default_grid: bool,
) -> list[str]:
    """:func:`summary_lines` of the grid, for the Snakefile. An estimate is advice: if it cannot
    be made (a rates file edited badly), one line says why and the workflow goes on."""
    try:
        estimate = estimate_grid(cfg, runs)
        segments = segment_line(cfg, plan_segments(cfg, estimate))
    except Exception as e:
        return [f"trpo-bench: no estimate of the grid's time ({type(e).__name__}: {e})"]
    lines = summary_lines(estimate, cores, jobs_at_once=jobs_at_once, default_grid=default_grid)
    from trpo_bench.envs.registry import env_spec

    # An env without a preset (inferred or a plug-in's): its family's rate was measured on
    # other tasks. (CartPole-v1 is the classic family's measurement itself.)
    rates = load_rates()
    unmeasured = sorted(
        {
            j.run.env
            for j in estimate.jobs
            if j.run.env not in rates.envs and env_spec(j.run.env).source != "built-in"
        }
    )
    if unmeasured:
        lines.append(
            f"trpo-bench: no measured rate for {', '.join(unmeasured)}: each takes its family's "
            f"default rate (trpo_bench/{RATES_FILE}), so its jobs' times are a guess"
        )
    return lines + ([segments] if segments else [])
