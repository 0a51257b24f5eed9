"""The checkpoint and the final policy: files that hold data only.

A results folder travels (a colleague's grid on a shared disk, a cluster's scratch space, a
published reproduction), so reading one must never run anything. torch's file format is a
pickle, which can name any function to call, and torch's full unpickler calls it.
Here ``checkpoint.pt`` and ``policy.pt`` hold data only: tensors, numbers, strings, bytes,
``None``, lists, tuples and dicts, with numpy arrays and scalars stored as tensors under a tag
(:data:`NDARRAY_TAG`, :data:`NPSCALAR_TAG`) so that they come back as the very same arrays.
They are written atomically and read with ``torch.load(..., weights_only=True)``, torch's
unpickler that refuses everything else. A file that holds anything else (a crafted payload, or
a CMA-ES checkpoint of an older trpo-bench, which pickled the ``cma`` object) gets one line
naming the file, what it asks for and what to do; nothing in it runs.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.envs.registry import make_env, restore_problem_of
from trpo_bench.envs.restore import snapshot, snapshot_to_data
from trpo_bench.run.atomic import atomic_write_bytes
from trpo_bench.run.files import CHECKPOINT_FILE
from trpo_bench.run.folder import check_identity, check_not_shorter
from trpo_bench.run.messages import short_reason

__all__ = [
    "NotDataError",
    "from_data",
    "load_checkpoint",
    "load_data",
    "save_data",
    "to_data",
]

NDARRAY_TAG = "__ndarray__"
NPSCALAR_TAG = "__npscalar__"
_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor)


class NotDataError(ConfigError):
    """A value or a file that is not data only (see the module's docstring)."""


def to_data(obj: Any, where: str = "state") -> Any:
    """``obj`` with its numpy arrays and scalars as tagged tensors; an object of any other
    type raises :class:`NotDataError` naming where it is (``state['search']['es']``).

    Containers without numpy values are returned as they are (a module's ``state_dict`` keeps
    its ``_metadata``), so the tensors are the very ones given: a resume stays bit-exact."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject or obj.dtype.kind not in "biufc":
            raise NotDataError(f"{where} is a numpy array of dtype {obj.dtype}: not data")
        dense = obj if obj.flags.c_contiguous else obj.copy(order="C")  # keeps 0-d arrays 0-d
        return {NDARRAY_TAG: torch.from_numpy(dense)}
    if isinstance(obj, np.generic):  # before the leaves: np.float64 is a float
        return {NPSCALAR_TAG: to_data(np.asarray(obj), where)[NDARRAY_TAG]}
    if isinstance(obj, _LEAVES):
        return obj
    if isinstance(obj, Mapping):
        items = {}
        for key, value in obj.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise NotDataError(f"{where} has a key of type {type(key).__name__}: not data")
            items[key] = to_data(value, f"{where}[{key!r}]")
        return _rebuilt(obj, items)
    if isinstance(obj, list | tuple):
        values = [to_data(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return _rebuilt(obj, values)
    raise NotDataError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}: a checkpoint or a "
        "policy holds data only (tensors, numpy arrays, numbers, strings, bytes, None, lists, "
        "tuples, dicts)"
    )


def from_data(obj: Any) -> Any:
    """The inverse of :func:`to_data`: tagged tensors back to numpy arrays and scalars."""
    if isinstance(obj, Mapping):
        if len(obj) == 1 and NDARRAY_TAG in obj:
            return obj[NDARRAY_TAG].numpy()
        if len(obj) == 1 and NPSCALAR_TAG in obj:
            return obj[NPSCALAR_TAG].numpy()[()]
        return _rebuilt(obj, {k: from_data(v) for k, v in obj.items()})
    if isinstance(obj, list | tuple):
        return _rebuilt(obj, [from_data(v) for v in obj])
    return obj


def _rebuilt(original: Any, converted: Any) -> Any:
    """``original`` if no value changed, else a container of its type holding ``converted``."""
    if isinstance(original, Mapping):
        if all(converted[k] is v for k, v in original.items()):
            return original
        out: dict[Any, Any] = OrderedDict() if isinstance(original, OrderedDict) else {}
        out.update(converted)
        if hasattr(original, "_metadata"):  # nn.Module.state_dict()'s versions
            out._metadata = original._metadata  # type: ignore[attr-defined]
        return out
    if all(a is b for a, b in zip(original, converted, strict=True)):
        return original
    return type(original)(converted)


def save_data(obj: Any, path: Path, where: str = "state") -> None:
    """Write ``obj`` (:func:`to_data`) to ``path`` atomically, in torch's format."""
    buffer = io.BytesIO()
    torch.save(to_data(obj, where), buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_data(path: Path, what: str, todo: str) -> Any:
    """Read a file written by :func:`save_data` with torch's data-only unpickler.

    A file that is not data only raises :class:`NotDataError`, one that cannot be read a
    :class:`ConfigError`; both name the file, ``what`` it should be and ``todo``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not data, or empty, truncated, not a torch file
        asks = _unsafe_globals(path) if isinstance(e, pickle.UnpicklingError) else []
        if asks:
            shown = ", ".join(asks[:3]) + (f" and {len(asks) - 3} more" if len(asks) > 3 else "")
            raise NotDataError(
                f"{path} is not a data-only {what}: it asks to run {shown}, and trpo-bench "
                f"does not load such a file (loading it could run code); {todo}"
            ) from None
        raise ConfigError(f"{path} is unreadable ({short_reason(e, 120)}); {todo}") from None
    return from_data(obj)


def _unsafe_globals(path: Path) -> list[str]:
    """What the file would call or build (torch reads the pickle's opcodes and runs none);
    empty where it cannot tell (not a torch zip file)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return []


def load_checkpoint(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint in ``out`` if there is one; it must belong to a run of the same identity
    (:func:`~trpo_bench.run.folder.check_identity`) with at most ``cfg.iterations`` done."""
    path = Path(out) / CHECKPOINT_FILE
    if not path.exists():
        return None
    todo = "delete it to start the run over (or choose another --out)"
    state = load_data(path, "checkpoint", todo)
    try:
        theirs, rows = state["config"], state["rows"]
        if not isinstance(theirs, Mapping) or not isinstance(rows, list):
            raise TypeError("its config or rows are not a dict and a list")
    except (KeyError, TypeError, IndexError) as e:
        raise ConfigError(
            f"{path} is not a trpo-bench checkpoint ({short_reason(e, 120)}); {todo}"
        ) from None
    check_identity(path, "a checkpoint of a run", theirs, cfg)
    check_not_shorter(path, len(rows), cfg)
    return state


_ENV_STATE_PROBLEMS: dict[str, str | None] = {}


def env_state_problem(env_id: str) -> str | None:
    """Why a checkpoint cannot hold ``env_id``'s envs mid-episode (``continue_episodes``), or
    None: the envs must restore exactly (:func:`restore_problem_of`, vine's test), and one
    env's snapshot, built and reset, must be data (:func:`to_data`). Probed once per process."""
    if env_id not in _ENV_STATE_PROBLEMS:
        problem = restore_problem_of(env_id)
        if problem is None:
            env = make_env(env_id)
            try:
                env.reset(seed=0)
                to_data(snapshot_to_data(snapshot(env)), "its snapshot")
            except (TypeError, NotDataError) as e:
                problem = str(e)
            finally:
                env.close()
        _ENV_STATE_PROBLEMS[env_id] = problem
    return _ENV_STATE_PROBLEMS[env_id]
