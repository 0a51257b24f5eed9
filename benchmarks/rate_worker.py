"""One training rate, measured in a process of its own (for ``bench_workflow.py estimate``).

  python benchmarks/rate_worker.py ENV METHOD PRESET SETTINGS_JSON CAP ITERATIONS

trains ITERATIONS (at least 3) iterations of ENV x METHOD at the grid's settings
(``SETTINGS_JSON``, the run's grid settings) with at most CAP env steps per iteration, one torch
thread, no MLflow, no checkpoints and the evaluation after the last iteration only, and prints
one JSON line:

* ``steady_steps`` and ``steady_cpu_s``: the env steps and this process's CPU seconds from the
  end of the first iteration to the end of the last but one (each iteration's end is clocked
  when the run records it). The first iteration pays what a run pays once (seeded resets load
  each Atari env's ROM), the last one the evaluation: both are left out, so what remains is what
  every further iteration of a long run costs, the bookkeeping between iterations included;
* ``eval_cpu_s`` and ``eval_env_steps``: the evaluation protocol's cost (one evaluation, of the
  barely trained policy; null where the code has no evaluation protocol).

It imports whichever ``trpo_bench`` comes first on ``sys.path``, so that
``PYTHONPATH=OLD_CHECKOUT python benchmarks/rate_worker.py ...`` measures an earlier version of
the code the same way (``estimate --before OLD_CHECKOUT``); it understands the layouts before
and after the package was split into sub-packages.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _api() -> tuple[Any, Any, Any, Any]:
    """build_config, train, the run recorder's class and the evaluator's class (None before
    the evaluation protocol)."""
    try:
        from trpo_bench.resolve import build_config
        from trpo_bench.run.evaluation import PolicyEvaluator
        from trpo_bench.run.recorder import RunRecorder
        from trpo_bench.run.trainer import train
    except ImportError:  # the layout before the sub-packages
        from trpo_bench.tracking import RunRecorder
        from trpo_bench.trainer import train

        from trpo_bench.config import build_config

        PolicyEvaluator = None
    return build_config, train, RunRecorder, PolicyEvaluator


def measure(
    env: str, method: str, preset: str, settings: dict, cap: int, iterations: int
) -> dict[str, Any]:
    """The steady iterations' env steps and CPU seconds, and one evaluation's cost."""
    import torch

    if iterations < 3:
        raise ValueError(f"iterations {iterations}: need at least 3 (first and last left out)")
    torch.set_num_threads(1)
    build_config, train, recorder_cls, evaluator_cls = _api()
    cfg = build_config(env, method, preset=preset, layers=[("grid", settings)])
    steps = min(int(cfg.steps_per_iter), cap)
    bench = {
        "iterations": iterations,
        "steps_per_iter": steps,
        "mlflow": False,
        "checkpoint_every": 0,
    }
    if evaluator_cls is not None:  # the code before the evaluation protocol has no such key
        bench["eval_every"] = 0
    cfg = build_config(env, method, preset=preset, layers=[("grid", settings), ("bench", bench)])
    ends: list[tuple[int, float]] = []  # (cumulative env steps, CPU clock) at each iteration
    record = recorder_cls.record

    def clocked_record(self: Any, row: Any, env_steps: int, seconds: float) -> dict[str, Any]:
        out = record(self, row, env_steps, seconds)
        ends.append((int(out["env_steps"]), time.process_time()))
        return out

    recorder_cls.record = clocked_record
    spent = {"cpu_s": 0.0, "env_steps": 0, "calls": 0}
    if evaluator_cls is not None:
        evaluate = evaluator_cls.__call__

        def timed_call(self: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            start = time.process_time()
            row = evaluate(self, *args, **kwargs)
            spent["cpu_s"] += time.process_time() - start
            spent["env_steps"] += int(row.get("eval_env_steps", 0))
            spent["calls"] += 1
            return row

        evaluator_cls.__call__ = timed_call
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run", log=lambda _m: None)
    (steps_first, cpu_first), (steps_last, cpu_last) = ends[0], ends[-2]
    calls = spent["calls"]
    return {
        "steady_steps": steps_last - steps_first,
        "steady_cpu_s": cpu_last - cpu_first,
        "eval_cpu_s": spent["cpu_s"] / calls if calls else None,
        "eval_env_steps": spent["env_steps"] / calls if calls else None,
    }


if __name__ == "__main__":
    env, method, preset, settings, cap, iterations = sys.argv[1:7]
    print(json.dumps(measure(env, method, preset, json.loads(settings), int(cap), int(iterations))))
