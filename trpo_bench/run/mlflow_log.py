"""MLflow logging, the browsing layer: the store (a lock beside a local sqlite file), the
grid's experiment, one run per training job (:class:`MlflowRun`) and the grid's summary run.

The result files are the truth; MLflow failures never stop training: every call is bounded
(:data:`HTTP_DEFAULTS`, the store lock's timeout), the first failure turns MLflow off for the
rest of the run with one warning line, and a signal arriving during a call is raised when the
call ends (:func:`defer_signal`). MLflow itself is imported inside the functions that call it
(about 2.3 s per process), so ``trpo-bench status`` and the grid can import this module freely.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from trpo_bench.config import TrainConfig
from trpo_bench.run.files import MLFLOW_ARTIFACTS
from trpo_bench.run.messages import short_reason
from trpo_bench.run.provenance import git_commit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first starts may race
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")


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
        return (db.parent / MLFLOW_ARTIFACTS).resolve().as_uri()
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
