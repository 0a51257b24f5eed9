"""Where a run came from: the code's commit, the package versions and the machine. Light (no
torch): the recorder writes these into summary.json (``trpo_bench.run.recorder``), and the
reproduction page and the committed runs (``trpo_bench.committed``) read them back."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

DIRTY_MARK = "-dirty"  # git_commit's suffix: the tree had uncommitted changes


def is_dirty(commit: str) -> bool:
    """Whether a recorded :func:`git_commit` ran from a tree with uncommitted changes."""
    return str(commit).endswith(DIRTY_MARK)


PACKAGES = ("trpo-bench", "torch", "numpy", "gymnasium", "mujoco", "ale-py", "mlflow", "cma")


def git_commit() -> str:
    """The commit of the trpo-bench checkout this code runs from ("unknown" outside git),
    with ``-dirty`` appended when tracked files differ from it (the code that ran is then not
    that commit's)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("diff", "--quiet", "HEAD", "--").returncode == 1
        return head.stdout.strip() + (DIRTY_MARK if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Python's version and each of :data:`PACKAGES`' ("not installed" where absent)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpuinfo_field(name: str) -> str | None:
    """The first ``name`` line's value in ``/proc/cpuinfo`` ("model name", "vendor_id"), or
    None where there is no such file or line (not Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    return None


def machine_text() -> str:
    """The CPU model, its core count and the OS, as this machine reports them."""
    model = cpuinfo_field("model name") or platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
