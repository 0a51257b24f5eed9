"""A run folder's identity and its lock: whether a folder holds this run (the identity of its
summary.json or checkpoint, no more iterations than asked), whether its files are as recorded
(their hashes), and one writer per folder (an advisory lock, ``.lock``)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trpo_bench.config import ConfigError, TrainConfig
from trpo_bench.run.files import LOCK_FILE, SUMMARY_FILE
from trpo_bench.run.identity import identity_differences
from trpo_bench.run.messages import short_reason

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first starts may race
    fcntl = None  # type: ignore[assignment]


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
