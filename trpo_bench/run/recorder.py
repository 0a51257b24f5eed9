"""The run recorder: one run folder and its MLflow run, shared by every method.

It writes progress.csv (a row per iteration), the checkpoint (data only,
:mod:`trpo_bench.run.checkpoint`), the final policy and summary.json, each atomically, and logs
the same to MLflow (:mod:`trpo_bench.run.mlflow_log`). Aggregation reads the files, never
MLflow.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trpo_bench.config import TrainConfig
from trpo_bench.run.atomic import write_json
from trpo_bench.run.checkpoint import load_checkpoint, save_data
from trpo_bench.run.files import CHECKPOINT_FILE, POLICY_FILE, PROGRESS_FILE, SUMMARY_FILE
from trpo_bench.run.folder import (
    check_run_folder,
    file_sha256,
    files_match,
    lock_run_folder,
    unlock_run_folder,
)
from trpo_bench.run.identity import run_identity
from trpo_bench.run.mlflow_log import KEY_METRICS, MlflowRun, default_tracking_uri, short_run_name
from trpo_bench.run.pace import (
    RATE_WINDOW,
    format_duration,
    format_rate,
    remaining_seconds,
    seconds_per_iteration,
    steps_per_second,
)
from trpo_bench.run.progress import summarize, write_progress_csv
from trpo_bench.run.provenance import git_commit, machine_text, package_versions
from trpo_bench.run.timelimit import TimeLimit, TimeLimitReached


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
        """Write ``state`` (the method's own, data only: :func:`~trpo_bench.run.checkpoint.
        to_data`) with the rows and the MLflow run id, atomically."""
        rows = self.rows if n_rows is None else self.rows[:n_rows]
        save_data(
            {
                **state,
                "config": self.cfg.to_dict(),
                "rows": rows,
                "mlflow_run_id": self.mlflow.run_id if self.mlflow else None,
            },
            self.out / CHECKPOINT_FILE,
            "the checkpoint's state",
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
            save_data(policy_artifact, self.out / POLICY_FILE, "the policy")
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
