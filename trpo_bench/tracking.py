"""Result files (the contract between jobs) and MLflow logging (the browsing layer).

Every file is written atomically: to a temporary name in the same folder, then renamed, so a
reader (or a job killed mid-write) never sees half a file. Aggregation reads these files, never
MLflow. MLflow failures never stop training: they are reported loudly and the files stay the
truth.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import torch

from trpo_bench.config import TrainConfig

T = TypeVar("T")

PROGRESS_FILE = "progress.csv"
SUMMARY_FILE = "summary.json"
POLICY_FILE = "policy.pt"
CHECKPOINT_FILE = "checkpoint.pt"

_UMASK = os.umask(0)
os.umask(_UMASK)


# --- atomic files -------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


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


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


# --- provenance -----------------------------------------------------------------------------


def git_commit() -> str:
    """The commit of the trpo-bench checkout this code runs from ("unknown" outside git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("trpo-bench", "torch", "numpy", "gymnasium", "mujoco", "ale-py", "mlflow", "cma"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# --- MLflow ---------------------------------------------------------------------------------


def default_tracking_uri(out: Path, configured: str = "") -> str:
    """``configured``, else $MLFLOW_TRACKING_URI, else sqlite ``mlflow.db`` beside ``out``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(out).resolve().parent / 'mlflow.db').as_posix()}"


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
                    "busy",
                    "unique constraint",
                    "timeout",
                    "connection",
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


def get_or_create_experiment(client: Any, name: str, uri: str) -> str:
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

    return _retry(attempt, "create experiment")


class MlflowRun:
    """One MLflow run per training job; every call is retried, then degraded to a warning."""

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
        self.uri = default_tracking_uri(out, cfg.mlflow_uri)
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.uri)
            exp_id = get_or_create_experiment(self.client, cfg.experiment, self.uri)
            if resume_run_id is not None:
                self.run_id = resume_run_id
                _retry(
                    lambda: self.client.update_run(resume_run_id, status="RUNNING"), "resume run"
                )
                return
            run = _retry(
                lambda: self.client.create_run(exp_id, run_name=run_name, tags=dict(tags)),
                "create run",
            )
            self.run_id = run.info.run_id
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                chunk = items[i : i + 100]
                _retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log params")
        except Exception as e:
            self._fail("start the MLflow run", e)

    def _fail(self, what: str, e: Exception) -> None:
        self.ok = False
        msg = (
            f"MLFLOW LOGGING FAILED: could not {what} at {self.uri!r}: "
            f"{type(e).__name__}: {e}. Training goes on; the result files are complete."
        )
        warnings.warn(msg, stacklevel=3)
        print(f"WARNING: {msg}", file=sys.stderr, flush=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if not self.ok or self.run_id is None:
            return
        try:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
            _retry(lambda: self.client.log_batch(self.run_id, metrics=items), "log metrics")
        except Exception as e:
            self._fail(f"log metrics at step {step}", e)

    def finish(self, status: str, artifacts: Iterable[Path]) -> None:
        if not self.ok or self.run_id is None:
            return
        try:
            for path in artifacts:
                if Path(path).exists():
                    _retry(
                        lambda p=path: self.client.log_artifact(self.run_id, str(p)), "log artifact"
                    )
            _retry(lambda: self.client.set_terminated(self.run_id, status=status), "end run")
        except Exception as e:
            self._fail("finish the run", e)
