"""A run's wall-clock limit: train until it nears, then stop cleanly for the next job to resume.

A cluster job has a time limit (SLURM's ``--time``, the partition's ``MaxTime``); a paper-grid
run may need several times that (Atari vine about 45 h). Inside a SLURM job the limit is read
from SLURM (:func:`slurm_time_left_s`); ``trpo-bench train --time-limit MINUTES`` sets one
anywhere. :class:`TimeLimit` then decides after every committed iteration whether another
iteration still fits: if not, the run checkpoints that iteration and stops with
:data:`EXIT_TIME_LIMIT`, which the workflow's ``retries`` turn into the next job (a segment)
resuming from checkpoint.pt. The stop comes before SLURM's SIGTERM, so no iteration is lost
and the job ends as a normal failure, not a kill.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field

# EX_TEMPFAIL (sysexits.h): "temporary failure; the user is invited to retry".
EXIT_TIME_LIMIT = 75


class TimeLimitReached(BaseException):
    """Raised after the last iteration that fits the time limit is checkpointed.

    A BaseException, like :class:`trpo_bench.run.trainer.Interrupted`: no ``except Exception``
    may swallow it and let the run train into SLURM's kill.
    """

    exit_code = EXIT_TIME_LIMIT

    def __init__(self, iterations_done: int, seconds_left: float) -> None:
        super().__init__(
            f"stopped before the job's time limit ({seconds_left:.0f} s left, too few for "
            f"another iteration) after {iterations_done} iterations"
        )


@dataclass
class TimeLimit:
    """``seconds`` of wall time from now (``time.monotonic``), of which the last ``margin_s``
    are kept for writing the result files, closing the MLflow run and the job's own exit.

    :meth:`fits_another` is asked after each iteration: the next one is assumed to take as long
    as the slowest so far, times ``safety``.
    """

    seconds: float
    margin_s: float | None = None
    safety: float = 1.5
    start: float = field(default_factory=time.monotonic)
    _last: float | None = None
    slowest_s: float = 0.0

    def __post_init__(self) -> None:
        if self.margin_s is None:
            # 5% of the limit, 10 s to 2 min: finish() is bounded (MLflow calls: about 10 s).
            self.margin_s = min(max(0.05 * self.seconds, 10.0), 120.0)
        self._last = self.start

    def mark(self, now: float | None = None) -> None:
        """Start timing the next iteration here (after a run's set-up, which is not one)."""
        self._last = time.monotonic() if now is None else now

    def left_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return self.start + self.seconds - now

    def fits_another(self, now: float | None = None) -> bool:
        """Record the iteration that just ended; whether one more fits before the margin."""
        now = time.monotonic() if now is None else now
        self.slowest_s = max(self.slowest_s, now - self._last)
        self._last = now
        return self.left_s(now) - self.margin_s > self.safety * self.slowest_s


_SLURM_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_slurm_duration(text: str) -> float | None:
    """Seconds of a SLURM duration (``[days-][hours:]minutes:seconds``, as squeue's ``%L``
    prints it); None for ``UNLIMITED``, ``NOT_SET``, ``INVALID`` or anything else."""
    m = _SLURM_LEFT.match(text.strip())
    if m is None:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def slurm_time_left_s(env: dict[str, str] | None = None, timeout_s: float = 10.0) -> float | None:
    """Seconds left before this SLURM job's time limit; None outside a job, for a job without a
    limit, or when SLURM cannot say (then the run relies on the SIGTERM at the limit)."""
    env = dict(os.environ) if env is None else env
    end = env.get("SLURM_JOB_END_TIME", "")  # SLURM 23.02 and later: epoch seconds
    if end.isdigit():
        return float(int(end) - time.time())
    job = env.get("SLURM_JOB_ID", "")
    if not job.isdigit():
        return None
    try:
        result = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format", "%L"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return parse_slurm_duration(result.stdout.strip().splitlines()[0] if result.stdout else "")


def job_time_limit(minutes: float | None) -> TimeLimit | None:
    """The run's :class:`TimeLimit`: ``minutes`` if given (0: none), else inside a SLURM job the
    job's time left, else None."""
    if minutes is not None:
        return TimeLimit(minutes * 60.0) if minutes > 0 else None
    left = slurm_time_left_s()
    return TimeLimit(left) if left is not None else None
