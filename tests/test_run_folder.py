"""Issue 13, points 4 and 7: a run folder is never overwritten or mixed up silently, and bad
input (or a full disk) is one clear line, exit status 2."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from train_args import train_args

from trpo_bench import cli
from trpo_bench.config import ConfigError
from trpo_bench.grid import grid_problems
from trpo_bench.resolve import build_config
from trpo_bench.run import atomic, checkpoint, folder

ROOT = Path(__file__).resolve().parents[1]
TIMING = ["wall_time_s", "sample_time_s", "update_time_s", "eval_protocol_time_s"]


def _args(out, *extra, iterations=2):
    return train_args(out, *extra, iterations=iterations, sets=("num_envs=2",))


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- point 4: identity, lock, empty --out, verification, extension, one MLflow run -----------


def test_rerun_with_another_config_and_no_checkpoint_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_args(out, "--set", "checkpoint_every=0")) == 0
    assert not (out / "checkpoint.pt").exists()
    before = _files(out)
    assert cli.main(_args(out, "--set", "checkpoint_every=0", "--set", "delta=0.05")) == 2
    line = _one_error_line(capsys)
    assert "summary.json holds a run with another config (differing: delta)" in line
    assert _files(out) == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["identity"]["delta"] == 0.01
    # Tracking-only keys, threads and checkpointing are not part of the identity.
    for key in ("mlflow", "run_name", "mlflow_uri", "experiment", "torch_threads", "iterations"):
        assert key not in summary["identity"]
    rerun = ("--set", "run_name=x", "--set", "experiment=other", "--set", "checkpoint_every=0")
    assert cli.main(_args(out, *rerun)) == 0


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(out / '.trpo-bench.lock')!r}, 'a+')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.write('pid 4242 on host elsewhere'); f.flush()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.main(_args(out)) == 2
        line = _one_error_line(capsys)
        assert f"run folder {str(out)!r} is in use" in line
        assert "pid 4242 on host elsewhere" in line
        assert not (out / "summary.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert cli.main(_args(out)) == 0  # the lock died with its holder
    assert (out / ".trpo-bench.lock").read_text() == ""  # released and emptied


def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(_args("")) == 2
    assert "--out is empty" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_progress_csv_is_repaired_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in _args(out, "--set", "checkpoint_every=1") if a != "--quiet"]
    assert cli.main(args) == 0
    good = (out / "progress.csv").read_bytes()
    (out / "progress.csv").write_bytes(good[:-20] + b"garbage\n")
    assert cli.main(args) == 0  # resumes at the end: nothing to train, the files are checked
    assert (out / "progress.csv").read_bytes() == good
    assert "repaired" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"]["progress.csv"] == folder.file_sha256(out / "progress.csv")


def test_a_corrupt_progress_csv_without_checkpoint_is_retrained(tmp_path):
    out = tmp_path / "run"
    assert cli.main(_args(out, "--set", "checkpoint_every=0")) == 0
    good = pd.read_csv(out / "progress.csv").drop(columns=TIMING)
    (out / "progress.csv").write_text("iteration\nnot a number\n")
    assert cli.main(_args(out, "--set", "checkpoint_every=0")) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "progress.csv").drop(columns=TIMING), good)


def test_a_finished_run_can_be_extended_not_shortened(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_args(out, iterations=2)) == 0
    assert (out / "checkpoint.pt").exists()  # the final iteration is always checkpointed
    first = pd.read_csv(out / "progress.csv").drop(columns=TIMING)
    assert cli.main(_args(out, "--set", "checkpoint_every=1", iterations=3)) == 0
    extended = pd.read_csv(out / "progress.csv").drop(columns=TIMING)
    assert len(extended) == 3
    pd.testing.assert_frame_equal(extended.iloc[:2][first.columns], first)
    assert json.loads((out / "summary.json").read_text())["iterations_done"] == 3
    capsys.readouterr()
    before = _files(out)
    assert cli.main(_args(out, iterations=2)) == 2
    assert "can be extended, not shortened" in _one_error_line(capsys)
    assert _files(out) == before


def _mlflow_runs(db: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("trpo-bench")
    return client, client.search_runs([exp.experiment_id])


def test_one_mlflow_run_per_folder_and_no_corrupt_upload(tmp_path):
    out, db = tmp_path / "run", tmp_path / "mlflow.db"
    args = [a if a != "mlflow=false" else f"mlflow_uri=sqlite:///{db}" for a in _args(out)]
    assert cli.main([*args, "--set", "checkpoint_every=0"]) == 0  # no checkpoint to carry an id
    assert cli.main([*args, "--set", "checkpoint_every=0"]) == 0
    client, runs = _mlflow_runs(db)
    assert len(runs) == 1
    run_id = runs[0].info.run_id
    assert json.loads((out / "summary.json").read_text())["mlflow_run_id"] == run_id
    # With a checkpoint: a corrupt progress.csv is repaired before it is uploaded again.
    assert cli.main(args) == 0
    good = (out / "progress.csv").read_bytes()
    (out / "progress.csv").write_bytes(b"corrupt\n")
    assert cli.main(args) == 0
    client, runs = _mlflow_runs(db)
    assert [r.info.run_id for r in runs] == [run_id]
    uploaded = Path(client.download_artifacts(run_id, "progress.csv", str(tmp_path)))
    assert uploaded.read_bytes() == good


# --- point 7: one clear line --------------------------------------------------------------


def test_seed_limit_in_the_config_and_the_grid_schema():
    build_config("CartPole-v1", "trpo-single-path", layers=[("t", {"seed": 2**64 - 1})])
    with pytest.raises(ConfigError, match=r"'seed': 18446744073709551616 is out of range"):
        build_config("CartPole-v1", "trpo-single-path", layers=[("t", {"seed": 2**64})])
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    seeds = schema["properties"]["seeds"]
    jsonschema.validate([0, 2**64 - 1], seeds)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([0, 2**64], seeds)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--seed", str(2**64)], "'seed': 18446744073709551616 is out of range"),
        (["--set", "env=[CartPole-v1, Hopper-v5]"], "config key 'env' in --set"),
        (["--set", "method=[trpo-single-path]"], "config key 'method' in --set"),
        (["--config", "LIST"], "config key 'env' in config file"),
        (["--config", "LATIN1"], "is not UTF-8 text"),
    ],
)
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, extra, needle):
    (tmp_path / "list.yaml").write_text("env: [CartPole-v1]\n")
    (tmp_path / "latin1.yaml").write_bytes("# d\xe9j\xe0 vu\ndelta: 0.02\n".encode("latin-1"))
    files = {"LIST": str(tmp_path / "list.yaml"), "LATIN1": str(tmp_path / "latin1.yaml")}
    extra = [files.get(a, a) for a in extra]
    out = tmp_path / "run"
    assert cli.main(_args(out, *extra)) == 2
    assert needle in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert cli.main(_args(out, "--set", "checkpoint_every=1")) == 0
    path = out / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    before = _files(out)
    assert cli.main(_args(out, "--set", "checkpoint_every=1")) == 2
    line = _one_error_line(capsys)
    assert f"{path} is unreadable" in line and "delete it to start the run over" in line
    assert _files(out) == before


def test_disk_full_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "atomic_write_bytes", full)  # every result file's writer
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full)  # checkpoints' and policies'
    assert cli.main(_args(out)) == 2
    line = _one_error_line(capsys)
    assert "disk full" in line and str(out) in line


def test_torch_threads_above_the_cores_warns(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(cli, "available_cores", lambda: 1)
    threads = torch.get_num_threads()
    try:
        assert cli.main(_args(tmp_path / "run", "--set", "torch_threads=2", iterations=1)) == 0
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert "warning: torch_threads=2 is more than the 1 cores available" in err


def test_an_override_for_an_env_outside_the_grid_warns(capsys):
    grid = {
        "envs": ["CartPole-v1"],
        "methods": ["trpo-single-path"],
        "seeds": [0],
        "resources": {"classic": {"threads": 1, "mem_mb": 1000, "runtime": 10}},
        "overrides": [{"env": ["CartPole-v1", "Hopper-v5"], "set": {"delta": 0.02}}],
    }
    families = {"CartPole-v1": "classic", "Hopper-v5": "mujoco"}
    assert grid_problems(grid, families, ["trpo-single-path"]) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "trpo-bench: warning: overrides[0] names env 'Hopper-v5', which is not in the grid's "
        "envs: it applies to no run (add the env to envs, or check the name)"
    ]


def test_a_cut_search_budget_lands_in_summary_notes(tmp_path):
    out = tmp_path / "run"
    args = _args(out, "--method", "cem", iterations=1)
    assert cli.main(args) == 0
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert len(notes) == 1 and "episodes cut at" in notes[0]
