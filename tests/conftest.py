"""Shared test settings: one torch thread (reproducible), no MLflow unless a test asks."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

SLURM_SCRIPT = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "slurm_single_node.sh"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch, tmp_path):
    # Never touch a user's store: tests that use MLflow point it into their tmp folder.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def crash_at(monkeypatch):
    """``crash_at(n)``: from now on a run raises RuntimeError("simulated crash") when it is about
    to record iteration ``n`` (a job dying mid-run); returns a function that disarms it."""
    from trpo_bench.run.recorder import RunRecorder

    def arm(n: int):
        original = RunRecorder.record

        def failing(self, row, env_steps, seconds):
            if len(self.rows) == n:
                raise RuntimeError("simulated crash")
            return original(self, row, env_steps, seconds)

        monkeypatch.setattr(RunRecorder, "record", failing)
        return lambda: monkeypatch.setattr(RunRecorder, "record", original)

    return arm


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster started by the project's script, stopped afterwards; None
    (with the reason) where it cannot be set up here."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_STATE_DIR": str(state)}
    try:
        start = subprocess.run(
            ["bash", str(SLURM_SCRIPT), "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        yield None, f"the SLURM script did not finish: {e}"
        return
    if start.returncode != 0:
        yield None, (start.stderr.strip() or start.stdout.strip())
        return
    started = [int(p.read_text()) for p in state.glob("*.started.pid")]
    try:
        yield {"SLURM_CONF": str(state / "slurm.conf")}, ""
    finally:
        subprocess.run(
            ["bash", str(SLURM_SCRIPT), "stop"], env=env, capture_output=True, timeout=60
        )
        # the daemons this fixture started are gone
        assert started and not [pid for pid in started if Path(f"/proc/{pid}").exists()]
