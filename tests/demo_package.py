"""A one-module package with entry points, built and installed by pip into a folder of its own
(``--target``; put it on PYTHONPATH for subprocesses): how a user installs a plug-in, without
touching the environment other tests share. Used by the method and env plug-in tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path


def install(base: Path, dist: str, module: str, source: str, entry_points: Mapping) -> Path:
    """Build ``dist`` (one module ``module`` holding ``source``) with ``entry_points``
    (group -> {name: "module:attr"}) and install it under ``base / "site"``; the site."""
    groups = "\n".join(
        f'[project.entry-points."{group}"]\n'
        + "".join(f'{name} = "{target}"\n' for name, target in names.items())
        for group, names in entry_points.items()
    )
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=68"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{dist}"\nversion = "0.1.0"\n\n{groups}\n'
        f'[tool.setuptools]\npy-modules = ["{module}"]\n'
    )
    src, site = base / "src", base / "site"
    src.mkdir(parents=True)
    (src / "pyproject.toml").write_text(pyproject)
    (src / f"{module}.py").write_text(textwrap.dedent(source))
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"),
            *("--no-compile", "--target", str(site), str(src)),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return site


def site_env(site: Path) -> dict[str, str]:
    """This process's environment with ``site`` first on PYTHONPATH (and no MLflow URI)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
