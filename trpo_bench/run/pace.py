"""The pace of a run, from its progress.csv columns: seconds per iteration, env steps per
second, time left, and how to print them. Light (no torch): the recorder's progress line
(``trpo_bench.run.recorder``) and ``trpo-bench status`` (``trpo_bench.analysis.status``) share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RATE_WINDOW = 5  # recent iterations that give a run's seconds per iteration


def seconds_per_iteration(wall_times: Sequence[float], window: int = RATE_WINDOW) -> float | None:
    """Mean wall time of the last ``window`` iterations, from progress.csv's cumulative
    ``wall_time_s`` (the first iteration counts from 0); None before the first iteration."""
    n = len(wall_times)
    if n == 0:
        return None
    k = min(max(window, 1), n)
    start = wall_times[n - 1 - k] if n > k else 0.0
    return max(float(wall_times[-1]) - float(start), 0.0) / k


def steps_per_second(
    env_steps: Sequence[float], wall_times: Sequence[float], window: int = RATE_WINDOW
) -> float | None:
    """Env steps per wall second over the last ``window`` iterations (None if unknown)."""
    n = min(len(env_steps), len(wall_times))
    if n == 0:
        return None
    k = min(max(window, 1), n)
    steps0, wall0 = (env_steps[n - 1 - k], wall_times[n - 1 - k]) if n > k else (0.0, 0.0)
    seconds = float(wall_times[n - 1]) - float(wall0)
    return (float(env_steps[n - 1]) - float(steps0)) / seconds if seconds > 0 else None


def remaining_seconds(done: int, planned: int | None, per_iteration: float | None) -> float | None:
    """Time left for a run: its iterations still to go times its seconds per iteration."""
    if planned is None or per_iteration is None:
        return None
    return max(planned - done, 0) * per_iteration


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m10s`` (under 10 minutes), ``49m``, ``2h05m``, ``1d04h``; ``?`` if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 3600:
        return f"{round(s / 60)}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def format_rate(value: float | None) -> str:
    """A rate for people: ``850``, ``7.9k``, ``1.2M``; ``?`` if unknown."""
    if value is None or not math.isfinite(value):
        return "?"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"
