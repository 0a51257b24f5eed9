"""The ``device`` option (issue 17): the policy, value net and update on a GPU, the envs on the
CPU. The placement logic is tested here on the CPU; the GPU run is tested where torch sees one
and skipped, with the reason, elsewhere."""

import json

import pandas as pd
import pytest
import torch

from trpo_bench.cli import main
from trpo_bench.config import ConfigError
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import build_learner, resolve_device
from trpo_bench.run.trainer import train

HAS_CUDA = torch.cuda.is_available()


def _cfg(method: str = "trpo-gae", **settings):
    base = {"iterations": 3, "steps_per_iter": 300, "num_envs": 2, "seed": 5, "mlflow": False}
    base |= {"eval_every": 2, "eval_episodes": 2, **settings}
    return build_config("InvertedPendulum-v5", method, layers=[("t", base)])


def _progress(out):
    rows = pd.read_csv(out / "progress.csv", keep_default_na=False)
    return rows.drop(columns=[c for c in rows.columns if c.endswith("_time_s")])


def test_device_names_resolve_and_a_missing_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"device 'cuda' asked for.*allowed here: cpu, auto"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")


def test_a_bad_device_value_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"device.*'tpu'.*cpu, cuda, auto"):
        _cfg(device="tpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without a GPU")
def test_cli_asking_for_a_missing_gpu_exits_2_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--env", "CartPole-v1", "--out", str(out), "--set", "device=cuda"]
    assert main([*argv, "--set", "mlflow=false"]) == 2
    assert "device 'cuda' asked for" in capsys.readouterr().err
    assert not out.exists()


def test_the_learner_is_built_on_the_cpu_then_placed(monkeypatch):
    # The weights are drawn on the CPU from the seed: every device starts from the same ones.
    cpu = build_learner(_cfg())
    assert cpu.policy.device == torch.device("cpu") and cpu.value_fn.device.type == "cpu"
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, d: moved.append((type(self), d)))
    build_learner(_cfg(), torch.device("meta"))
    assert [d for _, d in moved] == [torch.device("meta")] * 2  # the policy and the value net
    cpu.envs.close()


def test_a_forced_cpu_run_equals_the_default_run(tmp_path):
    quiet = lambda _m: None  # noqa: E731
    train(_cfg(), tmp_path / "default", log=quiet)
    train(_cfg(device="cpu"), tmp_path / "cpu", log=quiet)
    pd.testing.assert_frame_equal(_progress(tmp_path / "cpu"), _progress(tmp_path / "default"))


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU visible to torch on this machine")
@pytest.mark.parametrize("method", ["trpo-single-path", "trpo-gae", "trpo-vine", "ppo"])
def test_a_gpu_run_learns_as_the_cpu_run_does(method, tmp_path):
    """Same seed on both devices: the same random draws (made on the CPU) and the same
    initial weights, so the runs agree up to float rounding. GPU kernels round differently,
    and in a continuous task a rounding difference in an action changes the trajectory, so
    only the first iteration is compared, loosely."""
    settings = {"steps_per_iter": 600, "vine_branch_length": 20} if method == "trpo-vine" else {}
    quiet = lambda _m: None  # noqa: E731
    train(_cfg(method, **settings), tmp_path / "cpu", log=quiet)
    train(_cfg(method, device="cuda", **settings), tmp_path / "gpu", log=quiet)
    cpu, gpu = _progress(tmp_path / "cpu"), _progress(tmp_path / "gpu")
    assert list(cpu.columns) == list(gpu.columns)
    assert cpu.loc[0, "env_steps"] == gpu.loc[0, "env_steps"]
    assert gpu.loc[0, "return_mean"] == pytest.approx(cpu.loc[0, "return_mean"], rel=0.1)
    assert gpu.loc[0, "kl_mean"] == pytest.approx(cpu.loc[0, "kl_mean"], rel=0.5)
    summary = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert summary["status"] == "completed"
