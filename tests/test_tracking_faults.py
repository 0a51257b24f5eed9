"""Fault injection for tracking (issue 13, points 1 and 2): a tracking server that never answers,
a dead port, a held store lock, the workflow's store rule, and SIGTERM during a logging call.

Every test that could hang before the fix runs the job in a subprocess with a timeout guard, so
a regression fails in bounded time instead of hanging the suite.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trpo_bench.run.mlflow_log import HTTP_DEFAULTS, LOCK_TIMEOUT_ENV, StoreLockTimeout, store_lock

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [
    "train",
    "--env",
    "CartPole-v1",
    "--iterations",
    "2",
    "--steps-per-iter",
    "400",
    "--set",
    "num_envs=2",
    "--quiet",
]
BOUND_S = 30.0  # wall clock of a whole tiny run, process start included, with a bad store
GUARD_S = 90.0  # the subprocess guard: before the fix these runs took 4 to 15 minutes


def _env(**extra: str) -> dict[str, str]:
    """This environment without the user's MLflow settings (the defaults under test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.pop(LOCK_TIMEOUT_ENV, None)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


Result = tuple[subprocess.CompletedProcess, float]


def _train(out: Path, env: dict[str, str], *extra: str) -> Result:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "trpo_bench", *TRAIN, "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )
    return done, time.monotonic() - start


def _assert_complete(out: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["iterations_done"] == 2
    assert len((out / "progress.csv").read_text().splitlines()) == 3  # header + 2 rows
    assert (out / "policy.pt").stat().st_size > 0


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "MLFLOW LOGGING FAILED" in line]


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers. Its thread stops
    by itself after ``lifetime_s`` (or at :meth:`stop`)."""

    def __init__(self, lifetime_s: float = 120.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.deadline = time.monotonic() + lifetime_s
        self.stopped = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            with contextlib.suppress(OSError):  # a timeout: look at the clock again
                self.conns.append(self.sock.accept()[0])  # read nothing, answer nothing
        for conn in self.conns:
            conn.close()
        self.sock.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.stop()


def test_http_bounds_are_set_only_where_the_user_set_none(monkeypatch):
    from trpo_bench.run.mlflow_log import bound_tracking_calls

    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "42")
    bound_tracking_calls()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "42"  # the user's value wins
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"


def test_a_server_that_never_answers_costs_a_run_seconds(tmp_path, silent_server):
    uri = f"http://127.0.0.1:{silent_server.port}"
    done, seconds = _train(tmp_path / "run", _env(MLFLOW_TRACKING_URI=uri))
    assert done.returncode == 0, done.stderr
    assert seconds < BOUND_S, f"took {seconds:.1f} s"
    _assert_complete(tmp_path / "run")
    (line,) = _warning_lines(done.stderr)
    assert uri in line and "--set mlflow=false" in line and "timed out" in line.lower()
    assert "Traceback" not in done.stderr


def test_a_dead_port_costs_a_run_seconds(tmp_path):
    uri = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused
    done, seconds = _train(tmp_path / "run", _env(MLFLOW_TRACKING_URI=uri))
    assert done.returncode == 0, done.stderr
    assert seconds < BOUND_S, f"took {seconds:.1f} s"
    _assert_complete(tmp_path / "run")
    (line,) = _warning_lines(done.stderr)
    assert uri in line and "--set mlflow=false" in line
    assert "Traceback" not in done.stderr


def _hold_lock(db: Path):
    import fcntl

    handle = open(f"{db}.lock", "a")  # noqa: SIM115 (held until the test closes it)
    fcntl.flock(handle, fcntl.LOCK_EX)  # another open file: conflicts in this process too
    return handle


def test_store_lock_times_out_naming_the_lock_file(tmp_path):
    db = tmp_path / "mlflow.db"
    handle = _hold_lock(db)
    try:
        start = time.monotonic()
        lock = store_lock(f"sqlite:///{db}", timeout_s=0.5)
        with pytest.raises(StoreLockTimeout, match=f"{db}.lock"), lock:
            pass
        assert time.monotonic() - start < 5
    finally:
        handle.close()
    with store_lock(f"sqlite:///{db}", timeout_s=0.5):  # free again: taken at once
        pass


def test_a_held_store_lock_does_not_hold_a_run(tmp_path):
    db = tmp_path / "mlflow.db"
    handle = _hold_lock(db)
    try:
        env = _env(**{LOCK_TIMEOUT_ENV: "2"})
        done, seconds = _train(tmp_path / "run", env, "--set", f"mlflow_uri=sqlite:///{db}")
    finally:
        handle.close()
    assert done.returncode == 0, done.stderr
    assert seconds < BOUND_S, f"took {seconds:.1f} s"
    _assert_complete(tmp_path / "run")
    (line,) = _warning_lines(done.stderr)
    assert f"{db}.lock" in line and "--set mlflow=false" in line


def _store_rule(tmp_path: Path, uri: str) -> tuple[subprocess.CompletedProcess, dict, float]:
    """Run workflow/scripts/mlflow_store.py as Snakemake would, with a stand-in `snakemake`."""
    out, log = tmp_path / "mlflow_experiment.json", tmp_path / "mlflow_store.log"
    code = (
        "import runpy, types\n"
        f"sm = types.SimpleNamespace(output=[{str(out)!r}], log=[{str(log)!r}],\n"
        f"    params=types.SimpleNamespace(uri={uri!r}, experiment='grid'))\n"
        f"runpy.run_path({str(ROOT / 'workflow/scripts/mlflow_store.py')!r},\n"
        "    init_globals={'snakemake': sm}, run_name='__main__')\n"
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=GUARD_S
    )
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr + (log.read_text() if log.exists() else "")
    return done, json.loads(out.read_text()), seconds


def test_store_rule_degrades_to_one_warning_when_the_server_is_down(tmp_path):
    uri = "http://127.0.0.1:9"
    done, info, seconds = _store_rule(tmp_path, uri)
    assert seconds < BOUND_S, f"took {seconds:.1f} s"
    assert info["experiment_id"] is None and info["tracking_uri"] == uri
    assert uri in info["warning"] and "mlflow" in info["warning"]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("WARNING: ") and uri in lines[0], lines
    assert "Traceback" not in (tmp_path / "mlflow_store.log").read_text()


def test_store_rule_creates_the_experiment_when_the_store_works(tmp_path):
    _, info, _ = _store_rule(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert info["experiment_id"] and "warning" not in info


# --- SIGTERM during the logging call itself ----------------------------------------------


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    """One sqlite store for the in-process cases (creating its schema once saves seconds)."""
    return tmp_path_factory.mktemp("store") / "mlflow.db"


def _mlflow_status(db: Path, run_name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("trpo-bench")
    (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'")
    return run.info.status


@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("when", ["before", "after", "failing", "from-thread"])
def test_sigterm_inside_log_batch_always_interrupts(tmp_path, monkeypatch, shared_db, step, when):
    """The signal arrives inside the store's log_batch (before or after it writes, in a call
    that then fails, or from another thread while the call waits): exit 143, `interrupted`,
    a checkpoint, and the MLflow run KILLED."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from trpo_bench.cli import main

    original = SqlAlchemyStore.log_batch
    fired = []

    def log_batch(self, run_id, metrics, params, tags):
        if not metrics or metrics[0].step != step or fired:
            return original(self, run_id=run_id, metrics=metrics, params=params, tags=tags)
        fired.append(when)
        if when == "from-thread":
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
            time.sleep(0.5)  # the signal arrives while the call waits
        else:
            if when == "before":
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the call
            result = original(self, run_id=run_id, metrics=metrics, params=params, tags=tags)
            if when == "after":
                os.kill(os.getpid(), signal.SIGTERM)
            if when == "failing":
                os.kill(os.getpid(), signal.SIGTERM)
                raise RuntimeError("simulated store failure after the signal")
            return result
        return original(self, run_id=run_id, metrics=metrics, params=params, tags=tags)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", log_batch)
    out, name = tmp_path / "run", f"sigterm-{when}-{step}"
    argv = [*TRAIN, "--out", str(out), "--iterations", "4", "--set", "checkpoint_every=100"]
    argv += ["--set", f"mlflow_uri=sqlite:///{shared_db}", "--set", f"run_name={name}"]
    code = main(argv)
    assert fired == [when]
    assert code == 128 + signal.SIGTERM
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert (out / "checkpoint.pt").exists()
    assert _mlflow_status(shared_db, name) == "KILLED"


SLOW_LOG_BATCH = """
import sys, time
from pathlib import Path
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

original = SqlAlchemyStore.log_batch

def log_batch(self, run_id, metrics, params, tags):
    if metrics and metrics[0].step == 1:
        Path(sys.argv[1]).write_text("in log_batch")
        time.sleep(2)
    return original(self, run_id=run_id, metrics=metrics, params=params, tags=tags)

SqlAlchemyStore.log_batch = log_batch
from trpo_bench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_cli_sigterm_during_a_slow_log_batch_exits_143(tmp_path):
    db, out, marker = tmp_path / "mlflow.db", tmp_path / "run", tmp_path / "marker"
    argv = [*TRAIN, "--out", str(out), "--iterations", "4", "--set", f"mlflow_uri=sqlite:///{db}"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_LOG_BATCH, str(marker), *argv],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + GUARD_S
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run never reached iteration 1's logging"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resumes from its checkpoint" in err and "Traceback" not in err
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert (out / "checkpoint.pt").exists()
    assert _mlflow_status(db, "CartPole/sp/s0") == "KILLED"  # the short run name
