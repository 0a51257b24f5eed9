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
