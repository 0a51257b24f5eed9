"""Published numbers beside ours: ``config/reference.yaml`` (the paper's and the libraries'),
plus what env plug-ins publish for their own envs (``EnvSpec.reference``, docs/envs.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from trpo_bench.envs.registry import ENV_SPECS, EnvSpec


def load_reference(path: str | Path) -> dict[str, Any]:
    """The reference file's data (empty if there is none) with the plug-ins' numbers added."""
    path = Path(path)
    data = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
    return with_plugin_references(data, ENV_SPECS.values())


def with_plugin_references(
    reference: Mapping[str, Any], specs: Iterable[EnvSpec]
) -> dict[str, Any]:
    """``reference`` with each spec's own ``reference`` merged in: its sources and
    published_at (the file's win on a clash), its entries (``env`` defaults to the spec's id)
    and its ``normalization`` (random and best score) under the spec's id."""
    out = {key: value for key, value in reference.items()}
    for spec in specs:
        own = spec.reference
        if not own:
            continue
        for key in ("sources", "published_at"):
            out[key] = {**(own.get(key) or {}), **(out.get(key) or {})}
        entries = [{"env": spec.id, **entry} for entry in own.get("entries") or []]
        out["entries"] = [*(out.get("entries") or []), *entries]
        if own.get("normalization"):
            out["normalization"] = {
                **(out.get("normalization") or {}),
                spec.id: dict(own["normalization"]),
            }
    return out
