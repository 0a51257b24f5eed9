"""Env workers: a run's envs stepped in ``env_workers`` processes, with nothing else changed.

:class:`WorkerEnvVector` has :class:`~trpo_bench.envs.registry.EnvVector`'s interface (reset,
step of a prefix, step of a subset, snapshot and restore) and splits the ``num_envs`` envs into
``K`` contiguous slices: the first is stepped by the run's own process, each other one by a
worker process (K processes in all, one a core). Each slice is an ``EnvVector`` (so the MuJoCo
vector stepper, Atari's pooling and frame stacks run in the process that owns the env), and all
slices step at once, on command. Actions, observations, rewards and episode ends travel through
shared memory; a command and its reply are a few bytes on a pipe. The policy's forward pass,
every random draw and the update stay in the main process, and each env's trajectory depends
only on its own seed and its own actions, so a run's numbers do not depend on ``K``
(``tests/test_workers.py`` checks progress.csv for K = 1, 2, 4). A process waiting for a command
or a reply spins briefly before it sleeps (:func:`_wait`), where every process of the run has a
core of its own.

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
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import numpy as np

from trpo_bench.envs.registry import EnvVector, StepResult
from trpo_bench.envs.restore import EnvSnapshot

POLL_S = 1.0
"""How long the main process waits on a worker's pipe before it checks the worker is alive."""

START_TIMEOUT_S = 300.0
"""Longest wait for a worker to build its envs (the first Atari ROM load included)."""

SPIN_S = 0.002
"""How long a waiting process spins before it sleeps (:func:`_wait`): the gaps between vector
steps in sampling are shorter; the update's are longer."""


def available_cores() -> int:
    """The cores this process may run on (its affinity: a SLURM job's allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


class _Slice:
    """Envs ``start:stop`` of a run, stepped on command, their results written into the shared
    arrays: what a worker process runs, and what the main process runs for the first slice."""

    def __init__(
        self,
        env_id: str,
        options: Mapping[str, Any],
        start: int,
        stop: int,
        arrays: Mapping[str, np.ndarray],
    ) -> None:
        self.start, self.stop, self.a = start, stop, arrays
        self.envs = EnvVector(env_id, stop - start, options)
        self.envs.obs = arrays["obs"][start:stop]  # observations straight into shared memory

    def run(self, command: str, arg: Any) -> Any:
        """Carry out one command; its reply (None but for snapshots)."""
        envs, a, start = self.envs, self.a, self.start
        if command == "reset":
            envs.reset(arg)
        elif command == "step":  # arg: how many of this slice's envs to step
            stop = start + arg
            result = envs.step(a["actions"][start:stop], arg)
            a["reward"][start:stop] = result.reward
            a["terminated"][start:stop] = result.terminated
            a["truncated"][start:stop] = result.truncated
            for i, o in result.final_obs.items():
                a["final_obs"][start + i] = o
        elif command == "step_subset":  # arg: global indices of this slice's envs
            result = envs.step_subset(a["actions"][arg], np.asarray(arg) - start)
            a["reward"][arg] = result.reward
            a["terminated"][arg] = result.terminated
            a["truncated"][arg] = result.truncated
        elif command == "reset_some":  # arg: (global indices, seeds)
            indices, seeds = arg
            a["step_obs"][indices] = envs.reset_some([i - start for i in indices], seeds)
        elif command == "step_raw":  # arg: (global indices, the actions' dtype)
            indices, dtype = arg
            local = [i - start for i in indices]
            o, r, te, tr = envs.step_raw(a["actions"][indices].astype(dtype), local)
            a["step_obs"][indices], a["reward"][indices] = o, r
            a["terminated"][indices], a["truncated"][indices] = te, tr
        elif command == "snapshot":  # arg: global indices
            return envs.snapshot([i - start for i in arg])
        elif command == "restore":  # arg: (global indices, snapshots)
            indices, snaps = arg
            envs.restore([i - start for i in indices], snaps)
        else:
            raise ValueError(f"unknown env worker command {command!r}")
        return None

    def close(self) -> None:
        self.envs.close()


def _wait(conn: Connection, spin_s: float, timeout: float) -> bool:
    """Whether ``conn`` has a message within ``spin_s`` of spinning then ``timeout`` of sleep.

    The spin: a process that sleeps between vector steps pays the wake-up of its core, which
    on a virtual machine is 0.1-0.3 ms, as much as stepping a few envs; spinning (only where
    every process of the run has a core of its own) keeps the core awake across the short
    gaps of sampling, and gives way to sleep in the long ones (the update)."""
    if spin_s > 0.0:
        deadline = time.perf_counter() + spin_s
        while time.perf_counter() < deadline:
            if conn.poll(0):
                return True
    return conn.poll(timeout)


def _worker_main(
    conn: Connection,
    env_id: str,
    options: Mapping[str, Any],
    start: int,
    stop: int,
    buffers: Mapping[str, _Buffer],
    parent_pid: int,
    spin_s: float,
) -> None:
    """A worker: build envs ``start:stop`` of the run, then step them on command until told to
    close or until its pipe closes (the main process is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        return
    try:
        part = _Slice(env_id, options, start, stop, {n: b.array() for n, b in buffers.items()})
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    try:
        while True:
            try:
                while not _wait(conn, spin_s, 3600.0):
                    pass
                command, arg = conn.recv()
            except (EOFError, OSError):
                return  # the main process is gone
            if command == "close":
                conn.send(("ok", None))
                return
            try:
                reply = part.run(command, arg)
            except BaseException:
                conn.send(("error", traceback.format_exc()))
                return
            conn.send(("ok", reply))
    finally:
        part.close()


class WorkerEnvVector:
    """``num_envs`` envs of ``env_id`` stepped by ``workers`` processes (module docstring): the
    first slice in this process, the others each in a worker process; with
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
        # The episodes the last batch cut, when they go on across iterations (the sampler's:
        # trpo_bench.sampling.single_path.OpenEpisodes); None: each batch starts afresh.
        self.open_episodes: Any = None
        self._conns: dict[int, Connection] = {}
        self._procs: dict[int, Any] = {}
        self._local: _Slice | None = None
        self._started = False
        ctx = mp.get_context("spawn")
        # The spaces, from one env built here (as EnvVector's, so callers see the same).
        probe = EnvVector(env_id, 1, self.options)
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        self.discrete = probe.discrete
        obs_dtype = probe.obs.dtype
        probe.close()
        self._num_envs = num_envs
        k = max(1, min(workers, num_envs))
        bounds = np.linspace(0, num_envs, k + 1).round().astype(int)
        self.slices = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
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
        # Spin only where every process of the run has a core (else spinning slows the others).
        self._spin_s = SPIN_S if k <= available_cores() else 0.0
        try:
            for w, (start, stop) in enumerate(self.slices[1:], start=1):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main,
                    args=(
                        *(theirs, env_id, self.options, start, stop, self._buffers),
                        *(os.getpid(), self._spin_s),
                    ),
                    daemon=True,
                    name=f"trpo-bench env worker {w}",
                )
                proc.start()
                theirs.close()
                self._conns[w], self._procs[w] = mine, proc
            self._local = _Slice(env_id, self.options, *self.slices[0], arrays)
            self._gather(list(self._procs), timeout=START_TIMEOUT_S)
            self._started = True
        except BaseException:
            self.close()
            raise

    @property
    def num_envs(self) -> int:
        return self._num_envs

    @property
    def workers(self) -> int:
        """The processes that step the envs: this one and its worker processes."""
        return len(self.slices)

    @property
    def processes(self) -> int:
        """Worker processes running now (0 once closed)."""
        return sum(p.is_alive() for p in self._procs.values())

    # --- commands ----------------------------------------------------------------------------

    def _describe(self, w: int) -> str:
        start, stop = self.slices[w]
        return f"env worker {w} of {self.workers} ({self.env_id}, envs {start}-{stop - 1})"

    def _fail(self, w: int, message: str | None) -> NoReturn:
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
            if not self._started:
                message += (
                    " while starting (its own output above says why; a script that starts env "
                    'workers must run its code under `if __name__ == "__main__":`, as '
                    "multiprocessing's spawn requires)"
                )
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
                    ready = _wait(conn, self._spin_s, POLL_S)
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

    def _command(self, command: str, args: Mapping[int, Any]) -> dict[int, Any]:
        """Send ``command`` with ``args[w]`` to each slice ``w`` named, slice 0 carried out here
        meanwhile; the replies by slice."""
        if self._local is None:
            raise EnvWorkerError(f"the env workers of {self.env_id} are closed")
        remote = [w for w in args if w != 0]
        for w in remote:
            try:
                self._conns[w].send((command, args[w]))
            except (OSError, EOFError):
                self._fail(w, None)
        try:
            replies = {0: self._local.run(command, args[0])} if 0 in args else {}
        except BaseException:
            with contextlib.suppress(BaseException):  # the workers' replies, not to be left
                self._gather(remote)
            raise
        replies.update(zip(remote, self._gather(remote), strict=True))
        return replies

    def _by_slice(self, indices: Sequence[int]) -> dict[int, tuple[list[int], list[int]]]:
        """slice -> (its envs among ``indices``, their positions in ``indices``)."""
        parts: dict[int, tuple[list[int], list[int]]] = {}
        for w, (start, stop) in enumerate(self.slices):
            pos = [j for j, i in enumerate(indices) if start <= i < stop]
            if pos:
                parts[w] = ([int(indices[j]) for j in pos], pos)
        return parts

    # --- EnvVector's interface -------------------------------------------------------------

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every env with its own seed; later resets continue each env's own RNG."""
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        self._command("reset", {w: seeds[a:b] for w, (a, b) in enumerate(self.slices)})
        return self.obs

    def step(self, actions: np.ndarray, n: int | None = None) -> StepResult:
        """Step the first ``n`` envs (all by default) with ``actions[:n]``."""
        n = self.num_envs if n is None else n
        self._actions[:n] = actions[:n]
        counts = {w: min(max(n - a, 0), b - a) for w, (a, b) in enumerate(self.slices)}
        self._command("step", {w: c for w, c in counts.items() if c})
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
        self._command(
            "step_subset", {w: np.asarray(m) for w, (m, _) in self._by_slice(indices).items()}
        )
        return StepResult(
            None,
            self._reward[indices].copy(),
            self._terminated[indices].copy(),
            self._truncated[indices].copy(),
            {},
        )

    def reset_some(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Reset ``envs[indices[j]]`` with ``seeds[j]``; their observations (as EnvVector's)."""
        parts = self._by_slice(indices)
        self._command(
            "reset_some", {w: (m, [int(seeds[j]) for j in pos]) for w, (m, pos) in parts.items()}
        )
        return self._step_obs[list(indices)].copy()

    def step_raw(
        self, actions: np.ndarray, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step ``envs[indices[j]]`` with ``actions[j]`` as given, without resets
        (EnvVector.step_raw; the actions travel as float64 and are cast back, exactly)."""
        index = list(indices)
        self._actions[index] = actions
        dtype = np.asarray(actions).dtype.str
        self._command("step_raw", {w: (m, dtype) for w, (m, _) in self._by_slice(index).items()})
        return (
            self._step_obs[index].copy(),
            self._reward[index].copy(),
            self._terminated[index].copy(),
            self._truncated[index].copy(),
        )

    def snapshot(self, indices: Sequence[int]) -> list[EnvSnapshot]:
        """The full state of each env in ``indices`` (EnvVector.snapshot), in order."""
        parts = self._by_slice([int(i) for i in indices])
        replies = self._command("snapshot", {w: m for w, (m, _) in parts.items()})
        snaps: list[Any] = [None] * len(indices)
        for w, (_, pos) in parts.items():
            for j, snap in zip(pos, replies[w], strict=True):
                snaps[j] = snap
        return snaps

    def restore(self, indices: Sequence[int], snaps: Sequence[EnvSnapshot]) -> None:
        """Put ``envs[indices[j]]`` into the state of ``snaps[j]`` (EnvVector.restore), each in
        the process that owns it."""
        parts = self._by_slice([int(i) for i in indices])
        self._command("restore", {w: (m, [snaps[j] for j in pos]) for w, (m, pos) in parts.items()})

    def close(self) -> None:
        """Stop every worker (asked first, then killed), close this process's slice and the
        companion vectors; safe to call twice."""
        for companion in self.companions:
            companion.close()
        self.companions = []
        conns, procs = self._conns, self._procs
        self._conns, self._procs = {}, {}
        for w, proc in procs.items():
            if proc.is_alive():
                with contextlib.suppress(OSError, EOFError):
                    conns[w].send(("close", None))
        for w, proc in procs.items():
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
            conns[w].close()
        if self._local is not None:
            self._local.close()
            self._local = None

    def __del__(self) -> None:  # a vector dropped without close() leaves no worker behind
        if getattr(self, "_procs", None) or getattr(self, "_local", None):
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
