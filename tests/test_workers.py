"""Env workers change nothing but the wall time (issue 25, ``trpo_bench.envs.workers``).

A run with ``env_workers`` K = 2 or 4 must write the very progress.csv of the in-process run
(K = 1), every column but wall time, for every method: the workers only step envs, and every
random draw stays in the main process. And the workers die with their run: a worker's death
ends the run with an error that names it, keeps the last checkpoint, and the resumed run
equals an uninterrupted one; a killed main process leaves no worker behind.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trpo_bench.envs.registry import EnvVector
from trpo_bench.envs.workers import EnvWorkerError, WorkerEnvVector
from trpo_bench.methods.registry import METHODS
from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train

# Tiny runs of every built-in method on cart-pole, 4 envs so that K = 4 has one env a worker.
CASES = {
    "trpo-single-path": {},
    "trpo-vine": {"steps_per_iter": 600, "vine_branch_length": 20},
    "natural-gradient": {},
    "max-kl": {},
    "empirical-fim": {},
    "trpo-gae": {"vf_epochs": 2},
    "ppo": {"vf_epochs": 2, "ppo_epochs": 2},
    "vpg": {},
    "rwr": {"rwr_fit_iters": 5},
    "cem": {"steps_per_iter": 400, "population_size": 6},
    "cma-es": {"steps_per_iter": 400, "population_size": 6},
}


def _cfg(env: str, method: str, workers: int, **settings):
    base = {
        "iterations": 2,
        "steps_per_iter": 400,
        "num_envs": 4,
        "seed": 5,
        "eval_every": 1,
        "eval_episodes": 2,
        "mlflow": False,
        "env_workers": workers,
        **settings,
    }
    return build_config(env, method, layers=[("test", base)])


def _progress(run: Path) -> pd.DataFrame:
    rows = pd.read_csv(run / "progress.csv", keep_default_na=False)
    return rows.drop(columns=[c for c in rows.columns if c.endswith("_time_s")])


def _same_runs(tmp_path: Path, env: str, method: str, workers=(2, 4), **settings) -> None:
    train(_cfg(env, method, 1, **settings), tmp_path / "k1", log=lambda _m: None)
    want = _progress(tmp_path / "k1")
    assert len(want) == settings.get("iterations", 2)
    for k in workers:
        train(_cfg(env, method, k, **settings), tmp_path / f"k{k}", log=lambda _m: None)
        pd.testing.assert_frame_equal(_progress(tmp_path / f"k{k}"), want, check_exact=True)


def test_every_builtin_method_is_in_the_identity_test():
    assert set(CASES) == {name for name, m in METHODS.items() if m.origin == "built-in"}


@pytest.mark.parametrize("method", sorted(CASES))
def test_progress_is_the_same_with_2_and_4_env_workers(method, tmp_path):
    _same_runs(tmp_path, "InvertedPendulum-v5", method, **CASES[method])


@pytest.mark.parametrize(
    "method, settings",
    [
        ("trpo-single-path", {"hidden_sizes": [8]}),
        ("trpo-vine", {"steps_per_iter": 800, "vine_branch_length": 20, "hidden_sizes": [8]}),
        ("cma-es", {"steps_per_iter": 600, "population_size": 5, "hidden_sizes": [4]}),
    ],
)
def test_hopper_through_the_vector_stepper_is_the_same_in_workers(method, settings, tmp_path):
    # Episodes end (falls) at different steps in different envs: resets inside a worker.
    _same_runs(tmp_path, "Hopper-v5", method, workers=(3,), **settings)


@pytest.mark.parametrize("method", ["trpo-single-path", "trpo-vine"])
def test_atari_pooling_and_frame_stacks_run_in_the_workers(method, tmp_path):
    settings = {"iterations": 1, "steps_per_iter": 160, "eval_episodes": 1, "eval_every": 0}
    if method == "trpo-vine":
        settings |= {"vine_branch_length": 8, "vine_batch_branches": 8}
    _same_runs(tmp_path, "Pong-v5", method, workers=(2,), **settings)


def test_a_vector_in_workers_steps_as_the_one_in_process():
    here, there = EnvVector("Hopper-v5", 5), WorkerEnvVector("Hopper-v5", 5, workers=2)
    try:
        assert there.slices == [(0, 2), (2, 5)]  # contiguous, as even as they go
        np.testing.assert_array_equal(there.reset(range(5)), here.reset(range(5)))
        rng, ended = np.random.default_rng(0), 0
        for t in range(60):
            a = rng.uniform(-1, 1, (5, 3))
            n = 3 if t % 7 == 0 else 5  # the last row of a budget steps a prefix
            mine, theirs = here.step(a, n), there.step(a, n)
            np.testing.assert_array_equal(theirs.next_obs, mine.next_obs)
            np.testing.assert_array_equal(theirs.reward, mine.reward)
            np.testing.assert_array_equal(theirs.terminated, mine.terminated)
            assert theirs.final_obs.keys() == mine.final_obs.keys()
            for i, o in mine.final_obs.items():
                np.testing.assert_array_equal(theirs.final_obs[i], o)
            ended += len(mine.final_obs)
        assert ended > 0  # random actions: hoppers fall, envs reset inside the workers
        snaps = there.snapshot([1, 3])
        there.restore([4, 0], snaps)  # a state of worker 0's env into worker 1's, and back
        here.restore([4, 0], here.snapshot([1, 3]))
        sub = there.step_subset(np.zeros((2, 3)), np.array([0, 4]))
        np.testing.assert_array_equal(sub.reward, here.step_subset(np.zeros((2, 3)), [0, 4]).reward)
    finally:
        here.close()
        there.close()


def test_a_worker_exception_names_the_env_the_worker_and_its_envs():
    there = WorkerEnvVector("InvertedPendulum-v5", 4, workers=2)
    try:
        there.reset(range(4))
        with pytest.raises(EnvWorkerError) as err:
            there.restore([3], ["not a snapshot"])
        message = str(err.value)
        assert "env worker 1 of 2 (InvertedPendulum-v5, envs 2-3) failed" in message
        assert "Traceback" in message  # the worker's own
        assert there.processes == 0  # the others were stopped with it
    finally:
        there.close()


def test_a_worker_killed_mid_iteration_ends_the_run_and_the_resume_is_exact(tmp_path, monkeypatch):
    settings = {"iterations": 4, "checkpoint_every": 1, "seed": 3}
    train(_cfg("InvertedPendulum-v5", "trpo-single-path", 2, **settings), tmp_path / "whole")
    original = WorkerEnvVector.step
    calls = {"n": 0}

    def step_then_kill(self, actions, n=None):
        calls["n"] += 1
        if calls["n"] == 250:  # iteration 3 of 4 (100 vector steps an iteration)
            os.kill(self._procs[1].pid, signal.SIGKILL)
        return original(self, actions, n)

    monkeypatch.setattr(WorkerEnvVector, "step", step_then_kill)
    cut = tmp_path / "cut"
    cfg = _cfg("InvertedPendulum-v5", "trpo-single-path", 2, **settings)
    with pytest.raises(EnvWorkerError, match=r"env worker 1 of 2 .* killed by signal SIGKILL"):
        train(cfg, cut, log=lambda _m: None)
    assert len(_progress(cut)) == 2  # iterations 0 and 1 recorded and checkpointed
    assert '"status": "failed"' in (cut / "summary.json").read_text()
    monkeypatch.setattr(WorkerEnvVector, "step", original)
    train(cfg, cut, log=lambda _m: None)  # resumes at iteration 2
    pd.testing.assert_frame_equal(_progress(cut), _progress(tmp_path / "whole"), check_exact=True)


def _workers_of(pid: int) -> set[int]:
    """The env workers of process ``pid``: its spawned children, not multiprocessing's resource
    tracker. Read from /proc, not ``ps``, whose options differ between procps and busybox."""
    workers = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # the process ended while being read
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            workers.add(int(stat.parent.name))
    return workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    "sig, target", [(signal.SIGKILL, "run"), (signal.SIGTERM, "run"), (signal.SIGKILL, "worker")]
)
def test_a_killed_run_or_worker_leaves_no_worker_behind(sig, target, tmp_path):
    out = tmp_path / "run"
    cmd = [
        *(sys.executable, "-m", "trpo_bench.cli", "train", "--env", "Hopper-v5"),
        *("--method", "trpo-single-path", "--out", str(out), "--quiet"),
        *("--iterations", "1000", "--steps-per-iter", "2000", "--set", "num_envs=4"),
        *("--set", "env_workers=3", "--set", "mlflow=false", "--set", "eval_every=0"),
        *("--set", "checkpoint_every=1"),
    ]
    stderr = tmp_path / "stderr"
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr.open("w"))
    try:
        # Killed while training (its first iteration recorded), not while the workers start.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            (out / "progress.csv").exists()
            and len((out / "progress.csv").read_text().splitlines()) >= 2
        ):
            time.sleep(0.2)
        workers = _workers_of(run.pid)
        assert len(workers) == 2, (
            f"the run did not train with its two env worker processes: {stderr.read_text()}"
        )
        os.kill(run.pid if target == "run" else min(workers), sig)
        run.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), f"workers left after {sig.name}"
        if target == "worker":  # one error line naming the worker; the checkpoint kept
            assert run.returncode == 1
            err = stderr.read_text()
            # worker 1 or 2 of 3 (the run's own process steps env 0)
            assert re.search(
                r"trpo-bench: error: env worker [12] of 3 \(Hopper-v5, envs \d-\d\) was killed "
                r"by signal SIGKILL",
                err,
            ), err
            assert "Traceback" not in err
            assert '"status": "failed"' in (out / "summary.json").read_text()
            assert (out / "checkpoint.pt").exists()
        elif sig == signal.SIGTERM:
            assert run.returncode == 128 + signal.SIGTERM
            assert '"status": "interrupted"' in (out / "summary.json").read_text()
    finally:
        if run.poll() is None:
            run.kill()


def test_two_torch_threads_give_the_same_numbers_twice(tmp_path):
    settings = {"torch_threads": 2, "hidden_sizes": [32, 32], "iterations": 2}
    for name in ("a", "b"):
        train(_cfg("Hopper-v5", "trpo-single-path", 1, **settings), tmp_path / name)
    pd.testing.assert_frame_equal(_progress(tmp_path / "a"), _progress(tmp_path / "b"))


def test_a_script_without_a_main_guard_is_told_what_spawn_needs(tmp_path):
    script = tmp_path / "no_guard.py"
    script.write_text(
        "from trpo_bench.envs.workers import WorkerEnvVector\n"
        "WorkerEnvVector('InvertedPendulum-v5', 2, workers=2).close()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert (
        "env worker 1 of 2 (InvertedPendulum-v5, envs 1-1) exited with status 1 while "
        "starting" in done.stderr
    )
    assert 'if __name__ == "__main__":' in done.stderr
