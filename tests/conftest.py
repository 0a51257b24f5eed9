"""Shared test settings: one torch thread (reproducible), no MLflow unless a test asks."""

import pytest
import torch


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
    from trpo_bench.run.tracking import RunRecorder

    def arm(n: int):
        original = RunRecorder.record

        def failing(self, row, env_steps, seconds):
            if len(self.rows) == n:
                raise RuntimeError("simulated crash")
            return original(self, row, env_steps, seconds)

        monkeypatch.setattr(RunRecorder, "record", failing)
        return lambda: monkeypatch.setattr(RunRecorder, "record", original)

    return arm
