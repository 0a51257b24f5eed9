"""Result files (the contract between jobs) and MLflow logging (the browsing layer).

Every file is written atomically: to a temporary name in the same folder, then renamed, so a
reader (or a job killed mid-write) never sees half a file. Aggregation reads these files, never
MLflow. MLflow failures never stop training: they are reported loudly and the files stay the
truth.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import json
import math
import os
import random
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.run.atomic import atomic_write_bytes, atomic_write_text, write_json
from trpo_bench.run.files import (
    CHECKPOINT_FILE,
    LOCK_FILE,
    POLICY_FILE,
    PROGRESS_FILE,
    SUMMARY_FILE,
)
from trpo_bench.run.identity import identity_differences, run_identity
from trpo_bench.run.pace import (
    RATE_WINDOW,
    format_duration,
    format_rate,
    remaining_seconds,
    seconds_per_iteration,
    steps_per_second,
)
from trpo_bench.run.provenance import git_commit, machine_text, package_versions
from trpo_bench.run.timelimit import TimeLimit, TimeLimitReached

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first starts may race
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_progress_csv(path: Path, rows: list[Mapping[str, Any]]) -> None:
    """progress.csv: one row per iteration; columns are the union of the rows' keys, in order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write_text(path, out.getvalue())


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return repr(v)  # exact round trip
    return v


# --- MLflow ---------------------------------------------------------------------------------


def default_tracking_uri(out: Path, configured: str = "") -> str:
    """``configured``, else $MLFLOW_TRACKING_URI, else sqlite ``mlflow.db`` beside ``out``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(out).resolve().parent / 'mlflow.db').as_posix()}"


# Every MLflow HTTP request is bounded: MLflow's own defaults (a 120 s timeout, 7 retries with
# exponential backoff, honouring a server's Retry-After) let one call take minutes, longer than a
# short run. These are set in trpo-bench's processes only, and only where the user has not set
# them: at most 2 attempts of 5 s each per call.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}
# How long a job waits for the lock file beside a local sqlite store before it gives up on
# MLflow (the lock is held for the second or so a job takes to open the store).
STORE_LOCK_TIMEOUT_S = 60.0
LOCK_TIMEOUT_ENV = "TRPO_BENCH_STORE_LOCK_TIMEOUT"
DISABLE_HINT = (
    "check the server and MLFLOW_TRACKING_URI (or --set mlflow_uri=...), "
    "or turn MLflow off with --set mlflow=false"
)


def bound_tracking_calls() -> None:
    """Set :data:`HTTP_DEFAULTS` in this process's environment where the user set nothing."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_local_store(uri: str) -> bool:
    """A store this process opens itself (sqlite, a folder), as opposed to a tracking server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def short_reason(e: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, cut in the middle to ``limit`` characters (the end of
    MLflow's HTTP errors says what happened: refused, timed out)."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    half = (limit - 5) // 2
    return text if len(text) <= limit else f"{text[:half]} ... {text[-half:]}"


# A signal handler must not raise inside MLflow's code: MLflow wraps what is raised there in
# its own exceptions, and an exception at an arbitrary point of a store call can leave a
# connection or transaction half done. While a tracking call runs in this process (they are
# bounded, see HTTP_DEFAULTS), a handler hands its raise to `defer_signal` and the raise
# happens as soon as the call returns or fails.
_deferred: dict[str, Any] = {"depth": 0, "pending": None}


def defer_signal(raise_it: Callable[[], None]) -> bool:
    """For a signal handler: inside :func:`tracking_call`, keep ``raise_it`` for the end of the
    call and return True; elsewhere return False (the handler then raises at once)."""
    if _deferred["depth"] == 0:
        return False
    _deferred["pending"] = raise_it
    return True


@contextlib.contextmanager
def tracking_call() -> Iterator[None]:
    """Mark a tracking call: a signal arriving during it is raised when it ends."""
    _deferred["depth"] += 1
    try:
        yield
    finally:
        _deferred["depth"] -= 1
        pending = _deferred["pending"]
        if _deferred["depth"] == 0 and pending is not None:
            _deferred["pending"] = None
            pending()


def _retry(fn: Callable[[], T], what: str, attempts: int = 8) -> T:
    """Call ``fn``, retrying transient store errors (sqlite lock contention) with backoff."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:  # MLflow wraps sqlite errors in several exception types
            if attempt == attempts - 1:
                raise
            text = str(e).lower()
            if not any(
                s in text
                for s in (
                    "locked",
                    "no such table",
                    "busy",
                    "unique constraint",
                    "already exists",
                    "temporarily",
                )
            ):
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 5.0)
    raise AssertionError(what)  # pragma: no cover


def artifact_root_for(uri: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database (not in the cwd)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


class StoreLockTimeout(RuntimeError):
    """The lock file beside a sqlite store stayed held past the timeout."""


def store_lock_timeout() -> float:
    """:data:`STORE_LOCK_TIMEOUT_S`, or $TRPO_BENCH_STORE_LOCK_TIMEOUT (seconds)."""
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, STORE_LOCK_TIMEOUT_S))
    except ValueError:
        return STORE_LOCK_TIMEOUT_S


@contextlib.contextmanager
def store_lock(uri: str, timeout_s: float | None = None) -> Iterator[None]:
    """An exclusive lock file beside a local sqlite store (a no-op for other stores).

    Waits at most ``timeout_s`` (default :func:`store_lock_timeout`), then raises
    :class:`StoreLockTimeout` naming the lock file. The holder deletes ``<db>.lock`` before it
    lets go, so none is left behind. That is safe because a lock counts only while the path
    still names the locked file: a job that was waiting on the deleted file gets it, sees that
    the path names no file (or another one) and tries again on the path, so two jobs never
    hold the lock at once.
    """
    if not uri.startswith("sqlite:///") or fcntl is None:
        yield
        return
    lock_path = Path(uri[len("sqlite:///") :] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    timeout = store_lock_timeout() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    while True:
        handle = open(lock_path, "a")  # noqa: SIM115 (closed below, after the unlock)
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreLockTimeout(
                            f"the lock file {lock_path} was held by another process for "
                            f"{timeout:.0f} s (a job opening the store, or a hung one: "
                            f"`fuser -v {lock_path}` names it; set ${LOCK_TIMEOUT_ENV} to wait "
                            "longer)"
                        ) from None
                    time.sleep(0.05 + 0.05 * random.random())
            if _names_same_file(lock_path, handle):
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError):
                        lock_path.unlink()  # while held: see the docstring
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
            # The holder before us deleted the file we waited on: lock the path anew.
            fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()


def _names_same_file(path: Path, handle: Any) -> bool:
    """Whether ``path`` still names the open file ``handle`` (not deleted or replaced)."""
    try:
        now, held = os.stat(path), os.fstat(handle.fileno())
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def get_or_create_experiment(client: Any, name: str, uri: str, attempts: int = 8) -> str:
    """The experiment's id, creating it once even when many jobs start together."""

    def attempt() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_root_for(uri))
        except Exception:
            exp = client.get_experiment_by_name(name)  # another job created it first
            if exp is None:
                raise
            return exp.experiment_id

    return _retry(attempt, "create experiment", attempts)


# A training run's key metrics, logged a second time under names that sort first among its
# two dozen metric charts (MLflow lists them by name): progress.csv column -> MLflow name.
KEY_METRICS = {
    "eval_return_mean": "1_eval_return",
    "return_mean": "2_train_return",
    "env_steps": "3_env_steps",
}
# Short method names for MLflow run names (the tags and the `run` tag keep the full names).
SHORT_METHODS = {
    "trpo-single-path": "sp",
    "trpo-vine": "vine",
    "natural-gradient": "ng",
    "empirical-fim": "efim",
    "trpo-gae": "gae",
}


def experiment_description(experiment_id: str, summary_run_id: str | None = None) -> str:
    """The experiment's description (its ``mlflow.note.content`` tag, Markdown shown above the
    runs table): where the results are and which metrics to look at first."""
    lines = [
        "trpo-bench: one run per training job (named `env/method/sSEED`; tags env, method, "
        "seed and `run`, the full name), and a run named `summary` holding the grid's tables, "
        "plots and claims.",
        "",
        "Key metrics, first on each run's page: `1_eval_return` (the evaluation protocol's "
        "return, the tables' yardstick), `2_train_return` (the training batch's return), "
        "`3_env_steps` (plot the others against it). Every progress.csv column is logged too.",
    ]
    if summary_run_id:
        lines += [
            "",
            f"**Results: the [summary run](#/experiments/{experiment_id}/runs/{summary_run_id})"
            "** (artifacts: `report/overview.html` gives the claims' verdicts, the comparison "
            "and the paper-style figure on one page).",
        ]
    return "\n".join(lines)


def set_experiment_description(client: Any, experiment_id: str, text: str) -> None:
    """Write ``text`` as the experiment's description (MLflow's ``mlflow.note.content``)."""
    _retry(
        lambda: client.set_experiment_tag(experiment_id, "mlflow.note.content", text),
        "describe the experiment",
    )


def short_run_name(name: str) -> str:
    """A run name short enough for MLflow's runs table: ``Hopper-v5/natural-gradient@step_size=
    0.3/seed3`` -> ``Hopper/ng@0.3/s3`` (env without its version, a short method name, swept
    values without their keys, ``s`` for seed). A name of another shape is kept."""
    parts = name.split("/")
    if len(parts) != 3 or not parts[2].startswith("seed"):
        return name
    env, variant, seed = parts
    method, _, sweep = variant.partition("@")
    values = ",".join(item.split("=", 1)[-1] for item in sweep.split(",")) if sweep else ""
    short = SHORT_METHODS.get(method, method) + (f"@{values}" if values else "")
    return f"{env.rsplit('-v', 1)[0]}/{short}/s{seed[4:]}"


class MlflowRun:
    """One MLflow run per training job. Every call is bounded (:data:`HTTP_DEFAULTS`, the store
    lock's timeout); the first call that fails turns MLflow off for the rest of the run with
    one warning line, so a bad store costs a run at most one bounded call."""

    def __init__(
        self,
        cfg: TrainConfig,
        out: Path,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        resume_run_id: str | None = None,
    ) -> None:
        self.ok = True
        self.run_id: str | None = None
        self.logged_steps: set[int] = set()
        self.uri = default_tracking_uri(out, cfg.mlflow_uri)
        # A local store's errors are lock contention worth retrying; a server's client retries
        # by itself (HTTP_DEFAULTS), and retrying its failures again would multiply the wait.
        self.attempts = 8 if is_local_store(self.uri) else 1
        bound_tracking_calls()
        try:
            with tracking_call():
                self._start(cfg, run_name, tags, params, resume_run_id)
        except Exception as e:
            self._fail("start the MLflow run", e)

    def _start(
        self,
        cfg: TrainConfig,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        resume_run_id: str | None,
    ) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        # Many jobs may open a fresh store at once, and MLflow's schema creation (alembic
        # migrations) is not safe under that race: one job at a time opens the store.
        with store_lock(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
            exp_id = get_or_create_experiment(
                self.client, cfg.experiment, self.uri, attempts=self.attempts
            )
        if resume_run_id is not None:
            self.run_id = resume_run_id
            self._retry(lambda: self.client.update_run(resume_run_id, status="RUNNING"), "resume")
            # Iterations logged after the checkpoint, before the interruption, are rerun
            # identically: log each step once.
            history = self._retry(
                lambda: self.client.get_metric_history(resume_run_id, "env_steps"),
                "read metric history",
            )
            self.logged_steps = {m.step for m in history}
            return
        run = self._retry(
            lambda: self.client.create_run(exp_id, run_name=run_name, tags=dict(tags)),
            "create run",
        )
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            chunk = items[i : i + 100]
            self._retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log params")

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        return _retry(fn, what, self.attempts)

    def _fail(self, what: str, e: Exception) -> None:
        self.ok = False
        msg = (
            f"MLFLOW LOGGING FAILED: could not {what} at {self.uri}: {short_reason(e)}. "
            "No more MLflow calls in this run; training goes on and the result files are "
            f"complete. To fix: {DISABLE_HINT}."
        )
        warnings.warn(msg, stacklevel=3)
        print(f"WARNING: {msg}", file=sys.stderr, flush=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if not self.ok or self.run_id is None or step in self.logged_steps:
            return
        try:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
            with tracking_call():
                self._retry(lambda: self.client.log_batch(self.run_id, metrics=items), "log")
        except Exception as e:
            self._fail(f"log metrics at step {step}", e)

    def finish(self, status: str, artifacts: Iterable[Path]) -> None:
        """Upload ``artifacts`` and end the run with ``status`` (FINISHED, FAILED, KILLED)."""
        if not self.ok or self.run_id is None:
            return
        try:
            with tracking_call():
                for path in artifacts:
                    if Path(path).exists():
                        self._retry(
                            lambda p=path: self.client.log_artifact(self.run_id, str(p)),
                            "log artifact",
                        )
                self._retry(
                    lambda: self.client.set_terminated(self.run_id, status=status), "end run"
                )
        except Exception as e:
            self._fail("finish the run", e)


def log_summary_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, Iterable[Path]],
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log the workflow's summary run (tables and plots as artifacts) and return its id.

    ``artifacts`` maps an artifact folder (``tables``, ``plots``) to the files to put there.
    Unlike a training run's logging this raises on failure: the summary run is the job's output.
    """
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    bound_tracking_calls()
    client = MlflowClient(tracking_uri=uri)
    exp_id = _retry(lambda: get_or_create_experiment(client, experiment, uri), "open the store")
    all_tags = {"kind": "summary", "git_commit": git_commit(), **(tags or {})}
    run = _retry(lambda: client.create_run(exp_id, run_name=run_name, tags=all_tags), "create run")
    run_id = run.info.run_id
    ts = int(time.time() * 1000)
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    values = [Metric(k, float(v), ts, 0) for k, v in metrics.items() if math.isfinite(v)]
    for i in range(0, max(len(items), len(values)), 100):
        p, m = items[i : i + 100], values[i : i + 100]
        _retry(lambda p=p, m=m: client.log_batch(run_id, metrics=m, params=p), "log batch")
    for folder, paths in artifacts.items():
        for path in paths:
            _retry(
                lambda p=path, f=folder: client.log_artifact(run_id, str(p), artifact_path=f),
                "log artifact",
            )
    _retry(lambda: client.set_terminated(run_id, status="FINISHED"), "end run")
    return run_id


# --- the run folder ----------------------------------------------------------------------------


def _finite_mean(x: list[float]) -> float:
    return float(np.mean(x)) if x else math.nan


def _column(rows: list[Mapping[str, Any]], key: str) -> list[float]:
    """The finite values of ``key`` over the rows that have it."""
    return [float(r[key]) for r in rows if math.isfinite(float(r.get(key, math.nan)))]


def summarize(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Final figures of a run from its progress rows.

    ``*_return`` figures are of the training batches' episodes (``return_mean``); ``*_eval_*``
    figures are of the evaluation protocol (``trpo_bench.run.evaluation``): the final policy's
    deterministic return, its sampled return, its forward progress, and the mean over all
    evaluations (rllab's average-over-training, on the common yardstick).
    """
    returns = _column(rows, "return_mean")
    changes = _column(rows, "return_change")
    evals = _column(rows, "eval_return_mean")
    last_eval = next((r for r in reversed(rows) if "eval_return_mean" in r), {})
    return {
        "iterations_done": len(rows),
        "env_steps": rows[-1]["env_steps"] if rows else 0,
        "wall_time_s": rows[-1]["wall_time_s"] if rows else 0.0,
        "final_return": returns[-1] if returns else math.nan,
        "best_return": max(returns) if returns else math.nan,
        "average_return": _finite_mean(returns),  # rllab's metric: mean over all iterations
        "final_eval_return": float(last_eval.get("eval_return_mean", math.nan)),
        "final_eval_sampled_return": float(last_eval.get("eval_sampled_return_mean", math.nan)),
        "final_forward_reward": float(last_eval.get("eval_forward_reward_mean", math.nan)),
        "final_x_distance": float(last_eval.get("eval_x_distance_mean", math.nan)),
        "best_eval_return": max(evals) if evals else math.nan,
        "average_eval_return": _finite_mean(evals),
        "steps_accepted": sum(int(r.get("step_accepted", 0)) for r in rows),
        # The paper's claim: how often the measured return did not decrease after an update.
        "monotonic_fraction": float(np.mean([c >= 0 for c in changes])) if changes else math.nan,
    }


def episode_stats(returns: list[float], lengths: list[int]) -> dict[str, float]:
    """The progress.csv columns describing one iteration's finished episodes."""
    return {
        "return_mean": _finite_mean(returns),
        "return_std": float(np.std(returns)) if returns else math.nan,
        "return_min": float(np.min(returns)) if returns else math.nan,
        "return_max": float(np.max(returns)) if returns else math.nan,
        "episodes": len(returns),
        "episode_length_mean": _finite_mean([float(x) for x in lengths]),
    }


class RunRecorder:
    """One run folder and its MLflow run, shared by every method (gradient or derivative-free).

    ``record(row)`` adds one iteration: the cumulative ``env_steps`` and ``wall_time_s`` and the
    measured ``return_change`` are filled in, progress.csv is rewritten atomically, the numeric
    columns go to MLflow with ``step = iteration``, and a progress line is printed.
    ``checkpoint(state)`` and :func:`load_checkpoint` let a method resume exactly. With a
    ``time_limit`` (:mod:`trpo_bench.run.timelimit`), :meth:`commit` stops the run, checkpointed,
    when another iteration would not fit.
    """

    time_limit: TimeLimit | None = None

    def __init__(self, cfg: TrainConfig, out: Path, log: Callable[[str], None] = print) -> None:
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []  # lines for summary.json's `notes` (e.g. a cut budget)
        # One writer per folder: a second one fails here, before it writes anything.
        self._lock = lock_run_folder(self.out)
        try:
            previous = check_run_folder(self.out, cfg)
            resume = load_checkpoint(self.out, cfg)
        except BaseException:
            unlock_run_folder(self._lock)
            raise
        self.resumed_state = resume
        progress_ok = previous is None or previous.get("status") != "completed"
        if not progress_ok:  # policy.pt needs no check: finish() writes it again
            recorded = (previous.get("files") or {}).get(PROGRESS_FILE)
            progress_ok = recorded is None or files_match(self.out, {PROGRESS_FILE: recorded})
        if resume is not None:
            self.rows = resume["rows"]
            # The checkpoint is the truth: progress.csv is rewritten from its rows (a rerun of
            # a finished run never uploads a corrupt file; rows after the checkpoint are redone).
            write_progress_csv(self.out / PROGRESS_FILE, self.rows)
            if not progress_ok:
                log(f"repaired: {self.out / PROGRESS_FILE} was rewritten from {CHECKPOINT_FILE}")
            log(f"resuming {self.out} at iteration {len(self.rows)}")
        elif not progress_ok:
            log(f"{self.out / PROGRESS_FILE} is damaged and there is no checkpoint: retraining")
        # One MLflow run per folder: a rerun logs to the run recorded here (same store only).
        uri = default_tracking_uri(self.out, cfg.mlflow_uri)
        before = previous or {}
        prev_uri, prev_id = before.get("mlflow_uri"), before.get("mlflow_run_id")
        if prev_uri is None and resume is not None:  # no summary.json, or an older one
            prev_uri, prev_id = uri, resume.get("mlflow_run_id")
        full_name = cfg.run_name or f"{cfg.env}/{cfg.method}/seed{cfg.seed}"
        run_name = short_run_name(full_name)  # the runs table shows it whole
        tags = {
            "env": cfg.env,
            "method": cfg.method,
            "seed": str(cfg.seed),
            "run": full_name,
            "git_commit": git_commit(),
            "mlflow.runName": run_name,
        }
        self.mlflow = (
            MlflowRun(
                cfg,
                self.out,
                run_name,
                tags,
                cfg.to_dict(),
                resume_run_id=prev_id if prev_uri == uri else None,
            )
            if cfg.mlflow
            else None
        )
        if self.mlflow is not None and self.mlflow.run_id is not None:
            prev_uri, prev_id = uri, self.mlflow.run_id
        self.mlflow_ref = {"mlflow_uri": prev_uri, "mlflow_run_id": prev_id}
        write_json(
            self.out / SUMMARY_FILE,
            {
                "status": "running",
                "config": cfg.to_dict(),
                "identity": run_identity(cfg.to_dict()),
                **self.mlflow_ref,
            },
        )

    @property
    def next_iteration(self) -> int:
        return len(self.rows)

    @property
    def env_steps(self) -> int:
        return self.rows[-1]["env_steps"] if self.rows else 0

    @property
    def wall_time_s(self) -> float:
        return self.rows[-1]["wall_time_s"] if self.rows else 0.0

    def record(self, row: Mapping[str, Any], env_steps: int, seconds: float) -> dict[str, Any]:
        """Add iteration ``len(rows)``: ``env_steps`` and ``seconds`` are this iteration's."""
        prev = self.rows[-1]["return_mean"] if self.rows else math.nan
        full: dict[str, Any] = {
            "iteration": len(self.rows),
            "env_steps": self.env_steps + env_steps,
            "wall_time_s": round(self.wall_time_s + seconds, 3),
            **row,
        }
        # The measured change of the average return since the previous batch.
        full["return_change"] = full.get("return_mean", math.nan) - prev
        self.rows.append(full)
        write_progress_csv(self.out / PROGRESS_FILE, self.rows)
        if self.mlflow is not None:
            metrics = {
                k: v for k, v in full.items() if isinstance(v, int | float) and k != "iteration"
            }
            # The key metrics again under names that sort first on a run's page.
            metrics |= {key: metrics[k] for k, key in KEY_METRICS.items() if k in metrics}
            self.mlflow.log_metrics(metrics, full["iteration"])
        self.log(self._line(full))
        return full

    def _line(self, row: Mapping[str, Any]) -> str:
        """One compact line per iteration, e.g. ``[Hopper-v5 trpo-single-path s0] 12/200 6% |
        ret 512.3 eval 600.1 | kl 0.0098 step ok | 7.9k steps/s | 3m10s, ETA 49m``: iterations
        done of those planned, the training batch's and (when evaluated) the evaluation
        protocol's return, the step's mean KL and whether it was kept, env steps per second and
        the time so far and left, both from the last iterations' wall time."""
        cfg = self.cfg
        done, planned = row["iteration"] + 1, cfg.iterations
        parts = [
            f"[{cfg.env} {cfg.method} s{cfg.seed}] {done}/{planned} {100 * done / planned:.0f}%"
        ]
        returns = f"ret {row.get('return_mean', math.nan):.1f}"
        if "eval_return_mean" in row:
            returns += f" eval {row['eval_return_mean']:.1f}"
        parts.append(returns)
        step = [f"kl {row['kl_mean']:.4f}"] if "kl_mean" in row else []
        if "step_accepted" in row:
            reason = row.get("reject_reason") or "?"
            step.append("step ok" if row["step_accepted"] else f"step NO ({reason})")
        if step:
            parts.append(" ".join(step))
        recent = self.rows[-(RATE_WINDOW + 1) :]  # enough for the rates over the last window
        walls = [float(r["wall_time_s"]) for r in recent]
        rate = steps_per_second([float(r["env_steps"]) for r in recent], walls)
        left = remaining_seconds(done, planned, seconds_per_iteration(walls))
        parts.append(f"{format_rate(rate)} steps/s")
        parts.append(f"{format_duration(row['wall_time_s'])}, ETA {format_duration(left)}")
        return " | ".join(parts)

    def due_checkpoint(self) -> bool:
        every = self.cfg.checkpoint_every
        return bool(every) and len(self.rows) % every == 0

    def checkpoint(self, state: Mapping[str, Any], n_rows: int | None = None) -> None:
        """Write ``state`` (the method's own) with the rows and the MLflow run id, atomically."""
        rows = self.rows if n_rows is None else self.rows[:n_rows]
        atomic_torch_save(
            {
                **state,
                "config": self.cfg.to_dict(),
                "rows": rows,
                "mlflow_run_id": self.mlflow.run_id if self.mlflow else None,
            },
            self.out / CHECKPOINT_FILE,
        )

    def commit(self, state: Mapping[str, Any]) -> None:
        """Call after each recorded iteration with the method's state at that point.

        Keeps a copy (so an interruption mid-iteration can still checkpoint the last complete
        iteration, :meth:`checkpoint_last`) and writes the checkpoint when one is due.
        """
        self._last = (copy.deepcopy(dict(state)), len(self.rows))
        due = self.due_checkpoint()
        if due:
            self.checkpoint(*self._last)
        limit = self.time_limit
        if limit is not None and len(self.rows) < self.cfg.iterations and not limit.fits_another():
            # Another iteration would run into the job's time limit: stop at this one, saved.
            if not due:
                self.checkpoint(*self._last)
            raise TimeLimitReached(len(self.rows), limit.left_s())

    def checkpoint_last(self) -> bool:
        """Checkpoint the last committed iteration (after SIGTERM); False if there is none."""
        last = getattr(self, "_last", None)
        if last is None:
            return False
        self.checkpoint(*last)
        return True

    def finish(self, status: str, policy_artifact: Any | None) -> dict[str, Any]:
        """Write the final policy (if any), summary.json, and close the MLflow run."""
        cfg = self.cfg
        summary = {
            "status": status,
            "env": cfg.env,
            "method": cfg.method,
            "seed": cfg.seed,
            **summarize(self.rows),
            "config": cfg.to_dict(),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "machine": machine_text(),
            "identity": run_identity(cfg.to_dict()),
            **self.mlflow_ref,
            "notes": list(self.notes),
        }
        if status == "completed" and cfg.checkpoint_every and not self.due_checkpoint():
            self.checkpoint_last()  # a finished run can always be verified and extended
        if policy_artifact is not None:
            atomic_torch_save(policy_artifact, self.out / POLICY_FILE)
        summary["files"] = {
            name: file_sha256(self.out / name)
            for name in (PROGRESS_FILE, POLICY_FILE)
            if (self.out / name).exists()
        }
        write_json(self.out / SUMMARY_FILE, summary)
        if self.mlflow is not None:
            self.mlflow.finish(
                {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"),
                [self.out / PROGRESS_FILE, self.out / SUMMARY_FILE, self.out / POLICY_FILE],
            )
        unlock_run_folder(self._lock)
        return summary


def load_checkpoint(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint in ``out`` if there is one; it must belong to a run of the same identity
    (:func:`run_identity`) with at most ``cfg.iterations`` iterations done."""
    path = Path(out) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        theirs, rows = state["config"], state["rows"]
    except Exception as e:  # empty, truncated, not a checkpoint
        raise ConfigError(
            f"{path} is unreadable ({short_reason(e, 120)}); delete it to start the run over "
            "(or choose another --out)"
        ) from None
    check_identity(path, "a checkpoint of a run", theirs, cfg)
    check_not_shorter(path, len(rows), cfg)
    return state


def check_identity(path: Path, what: str, theirs: Mapping[str, Any], cfg: TrainConfig) -> None:
    """Raise a ConfigError naming the differing keys if ``theirs`` (a config or an identity)
    is not this run's identity."""
    keys = identity_differences(cfg.to_dict(), theirs)
    if keys:
        raise ConfigError(
            f"{path} holds {what} with another config (differing: {', '.join(keys)}); to rerun "
            "or resume it, use that config; to start over, delete the run folder or choose "
            "another --out"
        )


def check_not_shorter(path: Path, done: int, cfg: TrainConfig) -> None:
    if done > cfg.iterations:
        raise ConfigError(
            f"{path} holds a run with {done} iterations done, more than the {cfg.iterations} "
            "asked for; a run can be extended, not shortened: ask for at least "
            f"{done} or choose another --out"
        )


def check_run_folder(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The summary.json already in ``out`` (None if there is none), after checking that it
    belongs to this run (identity, not more iterations than asked); raises a ConfigError."""
    path = Path(out) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
        theirs = previous.get("identity") or previous["config"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"{path} is unreadable ({short_reason(e, 120)}), so the run folder cannot be "
            "checked; delete the run folder to start over, or choose another --out"
        ) from None
    check_identity(path, "a run", theirs, cfg)
    check_not_shorter(path, int(previous.get("iterations_done") or 0), cfg)
    return previous


def completed_summary(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """summary.json of ``out`` if the folder holds this run complete, else None: status
    ``completed`` with all ``cfg.iterations`` done, progress.csv and policy.pt as recorded (their
    hashes), its final checkpoint (readable, every iteration in it; none needed if
    ``checkpoint_every`` is 0), and, with MLflow on, its MLflow run in the store this run would
    log to.

    Rerunning a complete run is then a no-op (nothing written, no MLflow call): a cluster job
    that finished its files just before its time limit is complete whatever the scheduler says.
    The folder is checked as :class:`RunRecorder` checks it (another run's folder is refused).
    """
    out = Path(out)
    if not (out / SUMMARY_FILE).is_file():
        return None
    lock = lock_run_folder(out)
    try:
        previous = check_run_folder(out, cfg)
    finally:
        unlock_run_folder(lock)
    if previous is None or previous.get("status") != "completed":
        return None
    if int(previous.get("iterations_done") or 0) != cfg.iterations:
        return None
    files = previous.get("files") or {}
    if not {PROGRESS_FILE, POLICY_FILE} <= set(files) or not files_match(out, files):
        return None
    if (out / CHECKPOINT_FILE).is_file():
        # Read as a resume would (a damaged one is named, exit 2): it must hold every iteration.
        if len(load_checkpoint(out, cfg)["rows"]) != cfg.iterations:
            return None
    elif cfg.checkpoint_every:
        return None  # asked for checkpoints, has none: the rerun trains and writes the final one
    if cfg.mlflow and (
        previous.get("mlflow_run_id") is None
        or previous.get("mlflow_uri") != default_tracking_uri(out, cfg.mlflow_uri)
    ):
        return None
    return previous


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_match(out: Path, hashes: Mapping[str, str] | None) -> bool:
    """Whether the files of ``hashes`` (summary.json's ``files``) are there, unchanged."""
    for name, expected in (hashes or {}).items():
        path = Path(out) / name
        if not path.is_file() or file_sha256(path) != expected:
            return False
    return True


def lock_run_folder(out: Path) -> Any:
    """Lock ``out`` for this process (an open file; None where there are no locks). A second
    writer gets a ConfigError naming the folder and the holder."""
    if fcntl is None:
        return None
    path = Path(out) / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 - held until unlock_run_folder
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process that has not yet written its pid"
        handle.close()
        raise ConfigError(
            f"run folder {str(out)!r} is in use by another trpo-bench run ({holder}); wait for "
            "it to end or choose another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
    handle.flush()
    return handle


def unlock_run_folder(handle: Any) -> None:
    """Release :func:`lock_run_folder`'s lock; the lock file stays, emptied (deleting it could
    let two writers hold "the" lock)."""
    if handle is None or handle.closed:
        return
    handle.seek(0)
    handle.truncate()
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
