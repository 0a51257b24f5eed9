"""Committed runs: a grid too long for one sitting, carried over in git.

A finished run folder's compact files (summary.json and progress.csv, gzip-compressed; no
checkpoint, no policy) are committed under a grid's ``committed_runs`` folder with the run
folder's layout (``{env}/{variant}/seed{N}/``). A later run of the same grid adopts each
committed run that is the run it plans (the same identity, every iteration done, status
completed) instead of training it again: the workflow's rule ``adopt`` writes the two files
into the results folder, and the tables, claims and plots read them as any other run's.

Light (no torch at import): the Snakefile plans with it. Everything read is JSON or CSV text;
nothing in a committed folder is executed.

    trpo-bench publish results/long docs/reproduction/long/runs    # commit these files
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trpo_bench.grid import Run, run_config
from trpo_bench.run.atomic import atomic_write_bytes, write_json
from trpo_bench.run.files import CHECKPOINT_FILE, MLFLOW_ARTIFACTS, PROGRESS_FILE, SUMMARY_FILE
from trpo_bench.run.identity import identity_differences
from trpo_bench.run.provenance import machine_text

COMMITTED_PROGRESS = PROGRESS_FILE + ".gz"
ADOPTED_KEY = "adopted_from"  # summary.json of an adopted run: the committed folder it came from


def _read_summary(folder: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _data_rows(csv_text: str) -> int:
    """Rows of a CSV text after its header (progress.csv has no quoted newlines)."""
    return max(len([line for line in csv_text.splitlines() if line.strip()]) - 1, 0)


def publish_runs(results: str | Path, dest: str | Path) -> list[str]:
    """Write each completed run of ``results/runs`` into ``dest`` as committed files
    (summary.json; progress.csv gzip-compressed with a zero timestamp, so the same run gives
    the same bytes). Returns the run folders written, relative to ``dest``.

    A summary that predates the ``machine`` field gets this machine's, with a note saying
    so (publish where the runs ran). Runs not completed are skipped, and so are adopted runs
    (``adopted_from``): they are committed already, and rewriting them would only record a
    machine-local path in the committed summary. MLflow's copies of a run's files (a local
    store's ``mlartifacts``, which `trpo-bench train --out results/runs/...` keeps beside the
    run folder) are not runs and are skipped."""
    results, dest = Path(results), Path(dest)
    written = []
    for path in sorted((results / "runs").glob(f"**/{SUMMARY_FILE}")):
        folder = path.parent
        if MLFLOW_ARTIFACTS in folder.relative_to(results / "runs").parts:
            continue
        summary = _read_summary(folder)
        if summary is None or summary.get("status") != "completed":
            continue
        if ADOPTED_KEY in summary or not (folder / PROGRESS_FILE).is_file():
            continue
        if not summary.get("machine"):
            summary["machine"] = machine_text()
            summary.setdefault("notes", []).append(
                "machine: recorded when the run was published (its summary predates the field)"
            )
        rel = folder.relative_to(results / "runs")
        out = dest / rel
        atomic_write_bytes(
            out / COMMITTED_PROGRESS, gzip.compress((folder / PROGRESS_FILE).read_bytes(), mtime=0)
        )
        write_json(out / SUMMARY_FILE, summary)
        written.append(rel.as_posix())
    return written


def committed_problem(folder: Path, identity: Mapping[str, Any], iterations: int) -> str:
    """Why the committed run in ``folder`` does not stand for a run of ``identity`` (a
    resolved config) and ``iterations``; "" if it does."""
    if not (folder / SUMMARY_FILE).is_file():
        return "no committed run"
    summary = _read_summary(folder)
    if summary is None:
        return f"{folder / SUMMARY_FILE} is unreadable"
    if summary.get("status") != "completed":
        return f"status {summary.get('status')!r}, not completed"
    done = summary.get("iterations_done")
    if done != iterations:
        return f"{done} iterations done, the grid asks for {iterations}"
    theirs = summary.get("identity") or summary.get("config") or {}
    differing = identity_differences(identity, theirs)
    if differing:
        return f"another config (differing: {', '.join(differing)})"
    try:
        text = gzip.decompress((folder / COMMITTED_PROGRESS).read_bytes()).decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
        return f"{folder / COMMITTED_PROGRESS} is unreadable ({e})"
    if _data_rows(text) != iterations:
        return f"{COMMITTED_PROGRESS} holds {_data_rows(text)} rows, not {iterations}"
    return ""


def adoptable_runs(
    cfg: Mapping[str, Any], runs: Sequence[Run], results: str | Path, base: str | Path = "."
) -> dict[str, Path]:
    """The runs of the grid that its ``committed_runs`` folder holds: run folder (relative to
    the results root, :attr:`Run.folder`) -> committed folder. A run is adopted when the
    committed one is the same run (:func:`committed_problem` finds nothing) and the results
    folder has not started it itself (neither summary.json nor checkpoint.pt there: a local
    run wins). A relative ``committed_runs`` is relative to ``base`` (the Snakefile's folder:
    the committed runs travel with the checkout). Resolves the config only of runs that have
    a committed folder."""
    root = cfg.get("committed_runs") or ""
    if not root:
        return {}
    root, results = Path(base) / root, Path(results)
    adopted = {}
    for run in runs:
        source = root / run.folder.removeprefix("runs/")
        if not (source / SUMMARY_FILE).is_file():
            continue
        local = results / run.folder
        if (local / SUMMARY_FILE).exists() or (local / CHECKPOINT_FILE).exists():
            continue
        config = run_config(run, cfg["preset"])
        identity = {**config.to_dict(), "seed": run.seed}  # the job's --seed, not the config's
        if not committed_problem(source, identity, config.iterations):
            adopted[run.folder] = source
    return adopted


def adopt_run(source: str | Path, out: str | Path) -> None:
    """Write the committed run of ``source`` into the run folder ``out``: progress.csv
    (decompressed, byte for byte what the run wrote) and summary.json (with ``adopted_from``)."""
    source, out = Path(source), Path(out)
    summary = _read_summary(source)
    if summary is None:
        raise ValueError(f"{source / SUMMARY_FILE} is unreadable")
    atomic_write_bytes(
        out / PROGRESS_FILE, gzip.decompress((source / COMMITTED_PROGRESS).read_bytes())
    )
    write_json(out / SUMMARY_FILE, {**summary, ADOPTED_KEY: source.as_posix()})
