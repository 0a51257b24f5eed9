"""`trpo-bench status`: states, iteration counts and time left, read from a grid's files."""

import io
import json
import os
import socket
import statistics

import pandas as pd
import pytest
import yaml

from trpo_bench.analysis import status
from trpo_bench.analysis.status import (
    Writer,
    decide_state,
    grid_eta,
    merge_config,
    parse_lock,
    stale_after,
    writer_alive,
)
from trpo_bench.cli import main
from trpo_bench.resolve import build_config
from trpo_bench.run import folder as run_folder
from trpo_bench.run import recorder
from trpo_bench.run.pace import (
    format_duration,
    remaining_seconds,
    seconds_per_iteration,
    steps_per_second,
)
from trpo_bench.run.trainer import train

ENV = "InvertedPendulum-v5"
METHOD = "trpo-single-path"
BUDGET = {"iterations": 5, "steps_per_iter": 300, "num_envs": 2, "eval_episodes": 1}


# --- the pure parts -----------------------------------------------------------------------------


def test_time_left_comes_from_the_runs_own_recent_iterations():
    # 2 of 5 iterations at 10 s each: 3 to go, 30 s left.
    assert seconds_per_iteration([10.0, 20.0]) == 10.0
    assert remaining_seconds(2, 5, 10.0) == 30.0
    # Only the last 5 iterations count: a slow start (100 s) is forgotten.
    walls = [100.0, 110.0, 130.0, 150.0, 170.0, 190.0, 210.0]
    assert seconds_per_iteration(walls) == (210.0 - 110.0) / 5
    assert seconds_per_iteration(walls, window=2) == 20.0
    assert seconds_per_iteration([]) is None
    assert remaining_seconds(2, None, 10.0) is None and remaining_seconds(2, 5, None) is None
    assert remaining_seconds(7, 5, 10.0) == 0.0
    # 1,000 env steps per iteration, 4 s each over the last two: 250 steps/s.
    assert steps_per_second([1000, 2000, 3000], [1.0, 5.0, 9.0], window=2) == 250.0


def test_grid_time_is_the_sum_over_the_cores_and_at_least_the_longest_run():
    assert grid_eta([10.0, 10.0, 10.0, 10.0], cores=2) == 20.0
    assert grid_eta([10.0, 10.0, 10.0, 10.0], cores=1) == 40.0
    assert grid_eta([100.0, 10.0, 10.0], cores=4) == 100.0  # one run can use one core only
    assert grid_eta([], cores=3) == 0.0


@pytest.mark.parametrize(
    "summary_status, started, alive, age_s, relaunched, state",
    [
        ("completed", True, None, 1e6, False, "done"),
        ("failed", True, None, 1.0, False, "failed"),
        ("diverged", True, None, 1.0, False, "diverged"),
        ("interrupted", True, None, 1.0, False, "interrupted"),
        (None, False, None, None, False, "pending"),
        ("running", True, None, 30.0, False, "running"),  # a write 30 s ago
        (None, True, None, 30.0, False, "running"),  # progress.csv, no summary yet
        ("running", True, None, 900.0, False, "stalled"),  # nothing for 15 min
        ("running", True, True, 1e6, False, "running"),  # its writer is alive here
        ("running", True, False, 5.0, False, "stalled"),  # its writer's pid is gone
        ("completed", True, True, 1.0, True, "running"),  # a rerun took the lock since
        ("completed", True, True, 1.0, False, "done"),  # the lock is older than the summary
    ],
)
def test_decide_state(summary_status, started, alive, age_s, relaunched, state):
    assert decide_state(summary_status, started, alive, age_s, 600.0, relaunched) == state


def test_slow_iterations_widen_the_stale_window():
    assert stale_after(None) == 600.0
    assert stale_after(10.0) == 600.0
    assert stale_after(300.0) == 900.0  # three of its own 5-minute iterations


def test_the_lock_names_the_writer_and_only_this_hosts_pids_are_checked():
    writer = parse_lock("pid 4242 on host node17\n")
    assert writer == Writer(4242, "node17")
    assert parse_lock("") is None
    assert writer_alive(writer, "node17", alive=lambda pid: pid == 4242) is True
    assert writer_alive(writer, "node17", alive=lambda pid: False) is False
    assert writer_alive(writer, "login1", alive=lambda pid: True) is None  # a SLURM node


def test_durations_read_like_the_progress_line():
    assert [format_duration(s) for s in (30, 190, 2940, 7500, 97200)] == [
        "30s",
        "3m10s",
        "49m",
        "2h05m",
        "1d03h",
    ]
    assert format_duration(None) == "?"


def test_config_files_merge_as_snakemake_merges_them():
    base = {"envs": ["a", "b"], "resources": {"x": 1, "y": 2}, "seeds": [0]}
    merge_config(base, {"envs": ["c"], "resources": {"y": 3}})
    assert base == {"envs": ["c"], "resources": {"x": 1, "y": 3}, "seeds": [0]}


# --- a half-finished grid of real runs ---------------------------------------------------------


def _train(folder, seed, log=lambda _m: None, **over):
    settings = {**BUDGET, "mlflow": False, "seed": seed, **over}
    cfg = build_config(ENV, METHOD, layers=[("test", settings)])
    return train(cfg, folder, log=log)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """results/ of a 5-seed grid: seeds 0, 1 done; 2 failed at iteration 2 (what Snakemake leaves
    of a failed job: its log, checkpoint and lock, its outputs summary.json and progress.csv
    deleted); 3 running at 2 of 5 iterations (progress.csv, no summary yet); 4 not started."""
    root = tmp_path_factory.mktemp("grid")
    results = root / "results"
    runs = results / "runs" / ENV / METHOD
    for seed in (0, 1):
        _train(runs / f"seed{seed}", seed)

    original = recorder.RunRecorder.record

    def crash_at_2(self, row, env_steps, seconds):
        if len(self.rows) == 2:
            raise RuntimeError("simulated crash")
        return original(self, row, env_steps, seconds)

    recorder.RunRecorder.record = crash_at_2
    lines = []
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            _train(runs / "seed2", 2, log=lines.append, checkpoint_every=1)
    finally:
        recorder.RunRecorder.record = original
    failed = pd.read_csv(runs / "seed2" / "progress.csv")
    for name in ("summary.json", "progress.csv"):  # "Removing output files of failed job"
        (runs / "seed2" / name).unlink()
    log = results / "logs" / "train" / ENV / METHOD / "seed2.log"
    log.parent.mkdir(parents=True)
    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>']
    log.write_text("\n".join([*lines, *traceback, "RuntimeError: simulated crash", ""]))

    # A run 2 iterations in: stop a real run there, then take away what only its end writes.
    # Its iterations took 10 s each (written into wall_time_s), so 3 to go take 30 s.
    running = runs / "seed3"
    _train(running, 3, iterations=2)
    (running / "summary.json").unlink()
    (running / "policy.pt").unlink()
    progress = pd.read_csv(running / "progress.csv")
    progress["wall_time_s"] = [10.0, 20.0]
    progress.to_csv(running / "progress.csv", index=False)

    grid_file = root / "grid.yaml"
    grid_file.write_text(
        yaml.safe_dump(
            {
                "results": str(results),
                "preset": "quick",
                "envs": [ENV],
                "methods": [METHOD],
                "seeds": [0, 1, 2, 3, 4],
                "exclude": [],
                "sweeps": [],
                "overrides": [{"env": ENV, "set": BUDGET}],
            }
        )
    )
    return {"results": results, "runs": runs, "grid_file": grid_file, "failed": failed}


def _collect(grid, **kw):
    plans = status.planned_runs(status.load_grid_config([grid["grid_file"]]))
    return {r.seed: r for r in status.collect(grid["results"], plans, **kw)}


def test_half_finished_grid_states_and_iterations(grid):
    runs = _collect(grid)
    assert {s: r.state for s, r in runs.items()} == {
        0: "done",
        1: "done",
        2: "failed",
        3: "running",
        4: "pending",
    }
    assert {s: (r.done, r.planned) for s, r in runs.items()} == {
        0: (5, 5),
        1: (5, 5),
        2: (2, 5),
        3: (2, 5),
        4: (0, 5),
    }
    assert "RuntimeError: simulated crash" in runs[2].note
    # The failed run's last return comes from its log's last progress line.
    assert runs[2].train_return == pytest.approx(grid["failed"]["return_mean"].iloc[-1], abs=0.05)
    done = pd.read_csv(grid["runs"] / "seed0" / "progress.csv")
    assert runs[0].train_return == pytest.approx(done["return_mean"].iloc[-1])
    assert runs[0].eval_return == pytest.approx(done["eval_return_mean"].dropna().iloc[-1])
    assert runs[0].env_steps == 5 * 300
    partial = pd.read_csv(grid["runs"] / "seed3" / "progress.csv")
    assert runs[3].train_return == pytest.approx(partial["return_mean"].iloc[-1])
    assert runs[3].env_steps == 2 * 300


def test_half_finished_grid_time_left(grid):
    runs = _collect(grid)
    assert runs[3].seconds_per_iter == 10.0 and runs[3].remaining_s == 30.0
    assert runs[0].remaining_s == 0.0 and runs[2].remaining_s is None
    # The pending run is estimated from its other seeds' measured seconds per iteration.
    measured = [runs[s].seconds_per_iter for s in (0, 1, 3)]  # seed 2 lost its progress.csv
    for s in (0, 1):
        walls = pd.read_csv(grid["runs"] / f"seed{s}" / "progress.csv")["wall_time_s"]
        assert runs[s].seconds_per_iter == pytest.approx(walls.iloc[-1] / len(walls))
    assert runs[4].eta_from == "seeds"
    assert runs[4].remaining_s == pytest.approx(5 * statistics.median(measured))
    summary = status.summarize_grid(list(runs.values()), cores=2)
    assert summary.counts == {"running": 1, "pending": 1, "done": 2, "failed": 1}
    left = 30.0 + runs[4].remaining_s
    assert summary.remaining_s == pytest.approx(left)
    assert summary.eta_s == pytest.approx(max(left / 2, 30.0, runs[4].remaining_s))


def test_a_run_without_writes_is_stalled_unless_its_writer_lives(grid):
    folder = grid["runs"] / "seed3"
    later = (folder / "progress.csv").stat().st_mtime + 3600
    assert _collect(grid, now=later)[3].state == "stalled"
    lock = run_folder.lock_run_folder(folder)  # this process writes the folder now
    try:
        assert parse_lock((folder / ".trpo-bench.lock").read_text()) == Writer(
            os.getpid(), socket.gethostname()
        )
        assert _collect(grid, now=later)[3].state == "running"
        # Seen from another host (a SLURM node's run): the files' age decides.
        assert _collect(grid, now=later, this_host="elsewhere")[3].state == "stalled"
    finally:
        run_folder.unlock_run_folder(lock)


def test_status_command_plain_and_json(grid, capsys):
    args = ["status", str(grid["results"]), "--configfile", str(grid["grid_file"])]
    assert main([*args, "--plain", "--cores", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    running = next(line for line in lines if "seed3" in line)
    assert "2/5" in running and " running " in running and "left 30s" in running
    assert "[########............]" in running  # 2/5 of a 20-character bar
    assert any(line.startswith("5 runs: 1 running, 1 pending, 2 done, 1 failed") for line in lines)
    assert any(line.startswith("time left: about") and "2 cores" in line for line in lines)

    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in data["runs"]] == ["done", "done", "failed", "running", "pending"]
    assert data["runs"][3]["remaining_s"] == 30.0 and data["grid"]["cores"] == 1

    assert main([*args, "--plain", "--only", "failed"]) == 0
    out = capsys.readouterr().out
    assert "seed2" in out and "seed0" not in out and "1 failed" in out


def test_status_table_has_a_bar_per_run(grid):
    runs = list(_collect(grid).values())
    stream = io.StringIO()
    status.render_rich(runs, status.summarize_grid(runs, 1), False, stream, width=150)
    text = stream.getvalue()
    assert text.count("━") >= 5 * 10  # a bar in every row
    assert "running" in text and "pending" in text and "2/5" in text
    assert "note: --cores 1 assumed" in text


def test_without_the_grid_config_every_started_run_is_listed(grid):
    runs = {r.seed: r for r in status.collect(grid["results"])}
    assert sorted(runs) == [0, 1, 2, 3]  # seed 4 has no folder: only the grid knows it
    assert runs[2].planned == 5  # from summary.json's config
    assert runs[3].planned == 2  # from checkpoint.pt: the run that wrote it asked for 2


@pytest.mark.parametrize("bad", ["missing", "a_file", "empty_dir"])
def test_bad_results_dir_is_one_line_and_exit_2(tmp_path, capsys, bad):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty_dir").mkdir()
    assert main(["status", str(tmp_path / bad)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trpo-bench: error: ") and bad in err[0]
    assert "runs/<env>/<variant>/seed<N>" in err[0] and captured.out == ""


def test_how_a_job_log_ends_says_how_the_job_ended():
    progress = [
        "[Hopper-v5 trpo-single-path s0] 11/200 6% | ret 498.0 | kl 0.0097 step ok | 7.9k steps/s",
        "[Hopper-v5 trpo-single-path s0] 12/200 6% | ret 512.3 eval 600.1 | kl 0.0098 step ok "
        "| 7.9k steps/s | 3m10s, ETA 49m",
    ]
    assert status.log_progress(progress) == (12, 200, 512.3, 600.1)
    assert status.log_progress(progress[:1]) == (11, 200, 498.0, None)
    assert status.log_outcome(progress) is None  # still going, or killed without a word
    crash = [*progress, "Traceback (most recent call last):", "ValueError: bad"]
    assert status.log_outcome(crash) == "failed"
    assert status.log_outcome([*progress, "trpo-bench: error: disk full"]) == "failed"
    signal = "trpo-bench: received signal SIGTERM; the run resumes from its checkpoint when "
    assert status.log_outcome([*progress, signal + "started again"]) == "interrupted"
    assert status.log_outcome([]) is None


def test_a_grid_not_started_is_estimated_from_the_measured_rates(tmp_path):
    (tmp_path / "runs").mkdir()
    plans = [status.PlannedRun(ENV, METHOD, seed, 5, 300) for seed in (0, 1)]
    runs = status.collect(tmp_path, plans, rate=lambda r: (100.0, 5.0))
    # 5 iterations x 300 steps at 100 steps/s, plus a job's fixed 5 s.
    assert [(r.state, r.remaining_s, r.eta_from) for r in runs] == [("pending", 20.0, "rates")] * 2
    assert status.summarize_grid(runs, cores=2).eta_s == 20.0
