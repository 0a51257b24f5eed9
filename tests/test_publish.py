"""`trpo-bench publish` (trpo_bench.committed.publish_runs): which runs it writes."""

import gzip
import json

from trpo_bench.committed import publish_runs


def _run(root, name, **summary):
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "machine": "m",
                                                     **summary}))  # fmt: skip
    (folder / "progress.csv").write_text("iteration,return_mean\n0,1.5\n")
    return folder


def test_publish_writes_trained_runs_and_leaves_adopted_and_unfinished_ones(tmp_path):
    res, dest = tmp_path / "results", tmp_path / "committed"
    _run(res, "E/a/seed0")
    _run(res, "E/a/seed1", adopted_from="/elsewhere/E/a/seed1")  # committed already
    _run(res, "E/a/seed2", status="interrupted")
    _run(res, "E/a/mlartifacts/0123abcd/artifacts")  # MLflow's copy of a run's files
    assert publish_runs(res, dest) == ["E/a/seed0"]
    assert not (dest / "E/a/seed1").exists() and not (dest / "E/a/seed2").exists()
    progress = gzip.decompress((dest / "E/a/seed0/progress.csv.gz").read_bytes())
    assert progress == b"iteration,return_mean\n0,1.5\n"
    assert "adopted_from" not in json.loads((dest / "E/a/seed0/summary.json").read_text())
