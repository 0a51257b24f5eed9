"""The committed runs of a grid (``trpo-bench publish``: summary.json and progress.csv.gz per
run folder) as tables: the one reader of them for the pages built from them (ablations.md,
long.md, the discussion's placeholders). JSON and CSV only; nothing in them is executed."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd

from trpo_bench.committed import COMMITTED_PROGRESS
from trpo_bench.run.files import SUMMARY_FILE


def read_committed(folder: str | Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Completed committed runs under ``folder``: one row per run (env, method, variant, seed,
    its resolved ``config``, every numeric figure of its summary, git_commit, machine) and,
    with ``progress``, their stacked progress rows (else an empty frame)."""
    rows, frames = [], []
    for path in sorted(Path(folder).glob(f"**/{SUMMARY_FILE}")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary.get("status") != "completed":
            continue
        row = {k: v for k, v in summary.items() if isinstance(v, int | float) and k != "seed"}
        row |= {
            "env": summary["env"],
            "method": summary["method"],
            "variant": path.parent.parent.name,
            "seed": int(summary["seed"]),
            "config": summary.get("config", {}),
            "git_commit": str(summary.get("git_commit", "unknown")),
            "machine": str(summary.get("machine", "unknown")),
        }
        rows.append(row)
        if progress:
            text = gzip.decompress((path.parent / COMMITTED_PROGRESS).read_bytes()).decode()
            frame = pd.read_csv(io.StringIO(text))
            frames.append(frame.assign(env=row["env"], variant=row["variant"], seed=row["seed"]))
    return pd.DataFrame(rows), (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
