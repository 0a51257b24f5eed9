"""Results are data, never code (issue 23): a crafted checkpoint or policy runs nothing when
`trpo-bench status`, a resume or policy loading reads it; the files trpo-bench writes hold data
only and come back exact. (Shell characters in grid values: tests/test_workflow.py.)"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from train_args import train_args

from trpo_bench import cli
from trpo_bench.config import ConfigError
from trpo_bench.run.checkpoint import NotDataError, from_data, load_data, save_data, to_data
from trpo_bench.run.learner import load_policy

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file (harmless)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _plant(path: Path, marker: Path, **data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**data, "payload": Payload(marker)}, path)


def _train(out: Path, *extra: str) -> int:
    return cli.main(train_args(out, *extra, sets=("checkpoint_every=1",)))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_the_planted_payload_is_live(tmp_path):
    """The control: torch's full unpickler runs the payload, so the tests below would see it."""
    marker = tmp_path / "ran"
    _plant(tmp_path / "x.pt", marker, config={}, rows=[])
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_status_reads_a_crafted_checkpoint_without_running_it(tmp_path, capsys):
    results = tmp_path / "results"
    folder = results / "runs" / "CartPole-v1" / "trpo-single-path" / "seed0"
    marker = tmp_path / "ran"
    _plant(folder / "checkpoint.pt", marker, config={"iterations": 7}, rows=[])
    assert cli.main(["status", str(results), "--plain"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1" in out
    assert not marker.exists()


def test_a_resume_refuses_a_crafted_checkpoint_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    capsys.readouterr()
    marker = tmp_path / "ran"
    path = out / "checkpoint.pt"
    good = torch.load(path, weights_only=True)
    _plant(path, marker, **good)  # the run's own state, plus the payload
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _train(out, "--iterations", "3") == 2
    line = _one_line(capsys)
    assert f"{path} is not a data-only checkpoint: it asks to run io.open" in line
    assert "delete it to start the run over" in line
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written


def test_a_crafted_policy_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "policy.pt"
    _plant(path, marker, env="CartPole-v1", hidden_sizes=[8], state_dict={})
    with pytest.raises(NotDataError, match=r"policy.pt is not a data-only policy"):
        load_policy(path)
    assert not marker.exists()


def test_a_cma_es_checkpoint_of_the_old_format_gets_one_line(tmp_path, capsys):
    """Before issue 23 a CMA-ES checkpoint pickled the `cma` object; such a file is named, with
    the class it asks for, and left as it is."""
    import cma

    out = tmp_path / "run"
    assert _train(out, "--method", "cma-es") == 0
    capsys.readouterr()
    path = out / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["search"] = {"es": cma.CMAEvolutionStrategy(np.zeros(3), 0.5, {"verbose": -9})}
    torch.save(state, path)
    assert _train(out, "--method", "cma-es", "--iterations", "3") == 2
    line = _one_line(capsys)
    assert "is not a data-only checkpoint: it asks to run " in line
    assert re.search(r"cma\.\w+\.\w+", line)


def test_the_files_a_run_writes_hold_data_only(tmp_path):
    """Every method's checkpoint and policy load with torch's data-only unpickler."""
    for method in ("trpo-single-path", "trpo-vine", "cem", "cma-es", "ppo"):
        out = tmp_path / method
        assert _train(out, "--method", method, "--steps-per-iter", "400") == 0
        for name in ("checkpoint.pt", "policy.pt"):
            assert torch.serialization.get_unsafe_globals_in_checkpoint(out / name) == []
        load_policy(out / "policy.pt")


def test_numpy_comes_back_exact_and_objects_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    sd = torch.nn.Linear(2, 2).state_dict()
    state = {
        "a": rng.standard_normal((3, 2)),
        "ints": np.arange(5, dtype=np.int32),
        "u": np.arange(3, dtype=np.uint8)[::-1],
        "scalar": np.float32(1.5),
        "rng": rng.bit_generator.state,  # 128-bit ints
        "nested": [(1, None, "x", b"y"), {"k": np.float64(0.1)}],
        "module": sd,
    }
    save_data(state, tmp_path / "s.pt")
    back = load_data(tmp_path / "s.pt", "test", "")
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["a"].dtype == np.float64 and back["ints"].dtype == np.int32
    assert back["u"].tolist() == [2, 1, 0]
    assert type(back["scalar"]) is np.float32 and back["scalar"] == np.float32(1.5)
    assert back["rng"] == state["rng"]
    assert back["nested"][0] == (1, None, "x", b"y")
    assert type(back["nested"][1]["k"]) is np.float64
    assert isinstance(back["module"], OrderedDict)
    assert all(torch.equal(back["module"][k], v) for k, v in sd.items())
    assert to_data(sd) is sd  # nothing to convert: the very object (its _metadata kept)
    assert from_data(to_data(state))["a"] is not None
    with pytest.raises(NotDataError, match=r"state\['x'\]\[0\] is a builtins.object"):
        to_data({"x": [object()]})
    with pytest.raises(NotDataError, match="dtype <U1"):
        to_data({"x": np.array(["a"])})


def test_a_replay_that_does_not_reproduce_the_search_is_refused(tmp_path, capsys):
    """CMA-ES resumes by replaying its generations; if they do not give the checkpoint's mean
    (another cma version, say), the run stops with one line instead of going on elsewhere."""
    out = tmp_path / "run"
    assert _train(out, "--method", "cma-es") == 0
    capsys.readouterr()
    path = out / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["search"]["sigma"] = state["search"]["sigma"] * 2
    torch.save(state, path)
    assert _train(out, "--method", "cma-es", "--iterations", "3") == 2
    line = _one_line(capsys)
    assert "did not give the checkpoint's mean and sigma" in line


def test_the_package_has_no_unsafe_load():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in sorted((ROOT / "trpo_bench").rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "weights_only=False" in line or re.search(r"\bpickle\.loads?\(", line)
    ]
    assert offenders == []


def test_a_damaged_checkpoint_is_a_config_error_not_a_crash(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="is unreadable"):
        load_data(path, "checkpoint", "delete it")
