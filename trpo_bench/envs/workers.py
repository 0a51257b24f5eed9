"""Env workers: a run's envs stepped in ``env_workers`` processes, with nothing else changed.

:class:`WorkerEnvVector` has :class:`~trpo_bench.envs.registry.EnvVector`'s interface (reset,
step of a prefix, step of a subset, snapshot and restore) and splits the ``num_envs`` envs into
``K`` contiguous slices, one per worker process. Each worker builds an ``EnvVector`` of its
slice (so the MuJoCo vector stepper, Atari's pooling and frame stacks run in the worker) and
steps it on command. Actions, observations, rewards and episode ends travel through shared
memory; a command and its reply are a few bytes on a pipe. The policy's forward pass, every
random draw and the update stay in the main process, and each env's trajectory depends only
on its own seed and its own actions, so a run's numbers do not depend on ``K``
(``tests/test_workers.py`` checks progress.csv for K = 1, 2, 4).

**Faults.** Workers are started once per run (``spawn``: a fresh interpreter, so nothing of the
main process's torch threads is inherited) and die with it: a worker's exception comes back as
an :class:`EnvWorkerError` naming the env, the worker and its envs, with the worker's
traceback; a worker killed from outside is noticed within a second (its pipe is polled with a
bound, and its process checked); a main process that dies (even by SIGKILL) leaves none behind,
since a worker exits when its pipe closes and, on Linux, is sent SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``). Workers ignore SIGINT: a Ctrl-C reaches the whole process group, and it
is the main process's to handle (checkpoint, summary, exit status).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import multiprocessing as mp
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from trpo_bench.envs.registry import EnvVector, StepResult
from trpo_bench.envs.restore import EnvSnapshot

POLL_S = 1.0
"""How long the main process waits on a worker's pipe before it checks the worker is alive."""

START_TIMEOUT_S = 300.0
"""Longest wait for a worker to build its envs (the first Atari ROM load included)."""


class EnvWorkerError(RuntimeError):
    """A worker failed or died: the message names the env, the worker and its envs."""


@dataclass(frozen=True)
class _Buffer:
    """One array in shared memory: its bytes, shape and dtype (picklable to a spawned worker)."""

    raw: Any  # multiprocessing RawArray of bytes
    shape: tuple[int, ...]
    dtype: str

    def array(self) -> np.ndarray:
        return np.frombuffer(self.raw, dtype=np.uint8).view(self.dtype).reshape(self.shape)


def _buffer(ctx: Any, shape: tuple[int, ...], dtype: Any) -> _Buffer:
    dtype = np.dtype(dtype)
    nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
    return _Buffer(ctx.RawArray("B", nbytes), tuple(shape), dtype.str)


def _die_with_parent() -> None:
    """Linux: have the kernel send this process SIGKILL when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


def _worker_main(
    conn: Connection,
    env_id: str,
    options: Mapping[str, Any],
    start: int,
    stop: int,
    buffers: Mapping[str, _Buffer],
    parent_pid: int,
) -> None:
    """A worker: build envs ``start:stop`` of the run, then step them on command until told to
    close or until its pipe closes (the main process is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        return
    arrays = {name: b.array() for name, b in buffers.items()}
    obs, final_obs = arrays["obs"][start:stop], arrays["final_obs"][start:stop]
    actions, reward, step_obs = arrays["actions"], arrays["reward"], arrays["step_obs"]
    terminated, truncated = arrays["terminated"], arrays["truncated"]
    try:
        envs = EnvVector(env_id, stop - start, options)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    envs.obs = obs  # the envs write their observations straight into shared memory
    conn.send(("ok", None))
    try:
        while True:
            try:
                command, arg = conn.recv()
            except (EOFError, OSError):
                return  # the main process is gone
            try:
                reply = None
                if command == "reset":
                    envs.reset(arg)
                elif command == "step":  # arg: how many of this worker's envs to step
                    result = envs.step(actions[start : start + arg], arg)
                    reward[start : start + arg] = result.reward
                    terminated[start : start + arg] = result.terminated
                    truncated[start : start + arg] = result.truncated
                    for i, o in result.final_obs.items():
                        final_obs[i] = o
                elif command == "step_subset":  # arg: global indices of this worker's envs
                    local = np.asarray(arg) - start
                    result = envs.step_subset(actions[arg], local)
                    reward[arg] = result.reward
                    terminated[arg] = result.terminated
                    truncated[arg] = result.truncated
                elif command == "reset_some":  # arg: (global indices, seeds)
                    indices, seeds = arg
                    step_obs[indices] = envs.reset_some([i - start for i in indices], seeds)
                elif command == "step_raw":  # arg: (global indices, the actions' dtype)
                    indices, dtype = arg
                    local = [i - start for i in indices]
                    o, r, te, tr = envs.step_raw(actions[indices].astype(dtype), local)
                    step_obs[indices], reward[indices] = o, r
                    terminated[indices], truncated[indices] = te, tr
                elif command == "snapshot":
                    reply = envs.snapshot([i - start for i in arg])
                elif command == "restore":  # arg: (global indices, snapshots)
                    indices, snaps = arg
                    envs.restore([i - start for i in indices], snaps)
                elif command == "close":
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError(f"unknown env worker command {command!r}")
            except BaseException:
                conn.send(("error", traceback.format_exc()))
                return
            conn.send(("ok", reply))
    finally:
        envs.close()


class WorkerEnvVector:
    """``num_envs`` envs of ``env_id`` stepped in ``workers`` processes (module docstring), with
    :class:`~trpo_bench.envs.registry.EnvVector`'s interface and results."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        options: Mapping[str, Any] | None = None,
        workers: int = 2,
    ) -> None:
        self.env_id = env_id
        self.options = dict(options or {})
        self.companions: list[Any] = []  # vectors built for this one (vine's branch pool)
        # The spaces, from one env built here (as EnvVector's, so callers see the same).
        probe = EnvVector(env_id, 1, self.options)
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        self.discrete = probe.discrete
        obs_dtype = probe.obs.dtype
        probe.close()
        self._num_envs = num_envs
        workers = max(1, min(workers, num_envs))
        bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
        self.slices = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        ctx = mp.get_context("spawn")
        obs_shape = (num_envs, *self.observation_space.shape)
        act_shape = (num_envs, *(() if self.discrete else self.action_space.shape))
        self._buffers = {
            "obs": _buffer(ctx, obs_shape, obs_dtype),
            "final_obs": _buffer(ctx, obs_shape, obs_dtype),
            "step_obs": _buffer(ctx, obs_shape, obs_dtype),
            "actions": _buffer(ctx, act_shape, np.int64 if self.discrete else np.float64),
            "reward": _buffer(ctx, (num_envs,), np.float64),
            "terminated": _buffer(ctx, (num_envs,), np.bool_),
            "truncated": _buffer(ctx, (num_envs,), np.bool_),
        }
        arrays = {name: b.array() for name, b in self._buffers.items()}
        self.obs = arrays["obs"]
        self._final_obs, self._actions = arrays["final_obs"], arrays["actions"]
        self._step_obs = arrays["step_obs"]
        self._reward = arrays["reward"]
        self._terminated, self._truncated = arrays["terminated"], arrays["truncated"]
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        try:
            for start, stop in self.slices:
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main,
                    args=(theirs, env_id, self.options, start, stop, self._buffers, os.getpid()),
                    daemon=True,
                    name=f"trpo-bench env worker {len(self._procs)}",
                )
                proc.start()
                theirs.close()
                self._conns.append(mine)
                self._procs.append(proc)
            self._gather(range(len(self._procs)), timeout=START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    @property
    def num_envs(self) -> int:
        return self._num_envs

    @property
    def workers(self) -> int:
        return len(self._procs)

    # --- commands ----------------------------------------------------------------------------

    def _describe(self, w: int) -> str:
        start, stop = self.slices[w]
        return f"env worker {w} of {self.workers} ({self.env_id}, envs {start}-{stop - 1})"

    def _send(self, w: int, command: str, arg: Any = None) -> None:
        try:
            self._conns[w].send((command, arg))
        except (OSError, EOFError):
            self._fail(w, None)

    def _fail(self, w: int, message: str | None) -> None:
        proc = self._procs[w]
        proc.join(timeout=POLL_S)
        if message is None:
            code = proc.exitcode
            how = (
                f"was killed by signal {signal.Signals(-code).name}"
                if code is not None and code < 0
                else f"exited with status {code}"
                if code is not None
                else "stopped answering"
            )
            message = f"{self._describe(w)} {how}"
        else:
            message = f"{self._describe(w)} failed:\n{message.rstrip()}"
        self.close()
        raise EnvWorkerError(message)

    def _gather(self, workers: Sequence[int], timeout: float | None = None) -> list[Any]:
        """Each named worker's reply, in order; an :class:`EnvWorkerError` if one fails or dies."""
        replies = []
        for w in workers:
            conn, proc, waited = self._conns[w], self._procs[w], 0.0
            while True:
                try:
                    ready = conn.poll(POLL_S)
                except (OSError, EOFError):
                    ready = True
                if ready:
                    try:
                        status, payload = conn.recv()
                    except (OSError, EOFError):
                        self._fail(w, None)
                    if status != "ok":
                        self._fail(w, payload)
                    replies.append(payload)
                    break
                waited += POLL_S
                if not proc.is_alive() or (timeout is not None and waited >= timeout):
                    self._fail(w, None)
        return replies

    # --- EnvVector's interface -------------------------------------------------------------

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every env with its own seed; later resets continue each env's own RNG."""
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        for w, (start, stop) in enumerate(self.slices):
            self._send(w, "reset", seeds[start:stop])
        self._gather(range(self.workers))
        return self.obs

    def step(self, actions: np.ndarray, n: int | None = None) -> StepResult:
        """Step the first ``n`` envs (all by default) with ``actions[:n]``."""
        n = self.num_envs if n is None else n
        self._actions[:n] = actions[:n]
        busy = []
        for w, (start, stop) in enumerate(self.slices):
            count = min(max(n - start, 0), stop - start)
            if count:
                self._send(w, "step", count)
                busy.append(w)
        self._gather(busy)
        terminated = self._terminated[:n].copy()
        truncated = self._truncated[:n].copy()
        final_obs = {
            i: self._final_obs[i].copy() for i in np.flatnonzero(terminated | truncated).tolist()
        }
        return StepResult(self.obs, self._reward[:n].copy(), terminated, truncated, final_obs)

    def step_subset(self, actions: np.ndarray, indices: np.ndarray) -> StepResult:
        """Step ``envs[indices[j]]`` with ``actions[j]``, without resetting ended episodes
        (EnvVector.step_subset)."""
        indices = np.asarray(indices, dtype=np.int64)
        self._actions[indices] = actions
        busy = []
        for w, (start, stop) in enumerate(self.slices):
            mine = indices[(indices >= start) & (indices < stop)]
            if mine.size:
                self._send(w, "step_subset", mine)
                busy.append(w)
        self._gather(busy)
        return StepResult(
            None,
            self._reward[indices].copy(),
            self._terminated[indices].copy(),
            self._truncated[indices].copy(),
            {},
        )

    def _by_worker(self, indices: Sequence[int]) -> list[tuple[int, list[int], list[int]]]:
        """(worker, its indices, their positions in ``indices``) for each worker with any."""
        parts = []
        for w, (start, stop) in enumerate(self.slices):
            pos = [j for j, i in enumerate(indices) if start <= i < stop]
            if pos:
                parts.append((w, [int(indices[j]) for j in pos], pos))
        return parts

    def reset_some(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Reset ``envs[indices[j]]`` with ``seeds[j]``; their observations (as EnvVector's)."""
        parts = self._by_worker(indices)
        for w, mine, pos in parts:
            self._send(w, "reset_some", (mine, [int(seeds[j]) for j in pos]))
        self._gather([w for w, _, _ in parts])
        return self._step_obs[list(indices)].copy()

    def step_raw(
        self, actions: np.ndarray, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step ``envs[indices[j]]`` with ``actions[j]`` as given, without resets
        (EnvVector.step_raw; the actions travel as float64 and are cast back, exactly)."""
        index = list(indices)
        self._actions[index] = actions
        parts = self._by_worker(index)
        for w, mine, _ in parts:
            self._send(w, "step_raw", (mine, np.asarray(actions).dtype.str))
        self._gather([w for w, _, _ in parts])
        return (
            self._step_obs[index].copy(),
            self._reward[index].copy(),
            self._terminated[index].copy(),
            self._truncated[index].copy(),
        )

    def snapshot(self, indices: Sequence[int]) -> list[EnvSnapshot]:
        """The full state of each env in ``indices`` (EnvVector.snapshot), in order."""
        indices = [int(i) for i in indices]
        busy = []
        for w, (start, stop) in enumerate(self.slices):
            mine = [i for i in indices if start <= i < stop]
            if mine:
                self._send(w, "snapshot", mine)
                busy.append(w)
        snaps = [s for part in self._gather(busy) for s in part]
        return snaps  # slices are contiguous and increasing: sorted indices keep their order

    def restore(self, indices: Sequence[int], snaps: Sequence[EnvSnapshot]) -> None:
        """Put ``envs[indices[j]]`` into the state of ``snaps[j]`` (EnvVector.restore), each in
        the worker that owns it."""
        parts = self._by_worker([int(i) for i in indices])
        for w, mine, pos in parts:
            self._send(w, "restore", (mine, [snaps[j] for j in pos]))
        self._gather([w for w, _, _ in parts])

    def close(self) -> None:
        """Stop every worker (asked first, then killed) and close the companion vectors; safe
        to call twice."""
        for companion in self.companions:
            companion.close()
        self.companions = []
        conns, procs = self._conns, self._procs
        self._conns, self._procs = [], []
        for conn, proc in zip(conns, procs, strict=True):
            if proc.is_alive():
                with contextlib.suppress(OSError, EOFError):
                    conn.send(("close", None))
        for conn, proc in zip(conns, procs, strict=True):
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
            conn.close()

    def __del__(self) -> None:  # a vector dropped without close() leaves no worker behind
        if getattr(self, "_procs", None):
            # at interpreter shutdown the daemon workers die with it anyway
            with contextlib.suppress(Exception):
                self.close()


AnyEnvVector = EnvVector | WorkerEnvVector
"""A run's env vector, in this process or in workers: the samplers and searches take either."""


def make_env_vector(
    env_id: str, num_envs: int, options: Mapping[str, Any] | None = None, workers: int = 1
) -> AnyEnvVector:
    """The run's env vector: in this process for ``workers`` 1, else in worker processes."""
    if workers <= 1:
        return EnvVector(env_id, num_envs, options)
    return WorkerEnvVector(env_id, num_envs, options, workers)
