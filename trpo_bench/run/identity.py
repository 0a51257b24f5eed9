"""What makes two runs the same run. Light (no torch): the recorder checks a run folder against
it before writing (``trpo_bench.run.recorder``), and the workflow checks a committed run against
the grid's run with it before adopting it (``trpo_bench.committed``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

# Config keys that are not part of a run's identity: where it is logged (tracking), how often it
# is checkpointed, its threads and env workers (the workflow sets the workers from the job's
# cores; they change no number; torch threads change only float rounding), and its length (a
# finished run may be extended).
NOT_IDENTITY_KEYS = (
    "mlflow",
    "run_name",
    "mlflow_uri",
    "experiment",
    "torch_threads",
    "env_workers",
    "device",
    "checkpoint_every",
    "iterations",
)


# Config keys added after runs were committed, each with the value that every run before it
# ran with: a config without the key is the same run as one with it at that value (committed
# runs stay adopted). A key's value other than this one is part of the identity as any key's.
ADDED_KEYS: dict[str, Any] = {"atari_frame_offset": 0.0, "continue_episodes": False}


def jsonable(x: Any) -> Any:
    """``x`` with non-finite floats as None, mappings' keys as strings and tuples as lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    return x


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the resolved config without :data:`NOT_IDENTITY_KEYS`
    and without the :data:`ADDED_KEYS` at their old value (as JSON would give it back)."""
    kept = {
        k: v
        for k, v in config.items()
        if k not in NOT_IDENTITY_KEYS and not (k in ADDED_KEYS and v == ADDED_KEYS[k])
    }
    return json.loads(json.dumps(jsonable(kept)))


def identity_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """The keys on which two configs (or identities) differ as run identities, sorted."""
    a, b = run_identity(ours), run_identity(theirs)
    return sorted(k for k in {*a, *b} if a.get(k, "?") != b.get(k, "?"))
