"""Variant names: a method and its swept values as one name (``natural-gradient@step_size=0.3``).

A leaf module (no other trpo_bench import): the grid (``trpo_bench.grid``) names its runs with
it and the analysis (``trpo_bench.analysis.tables``) reads the names back, without either importing
the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["format_value", "variant_name"]


def format_value(value: Any) -> str:
    """A swept value as it appears in a variant name: 0.03 -> ``0.03``, True -> ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def variant_name(method: str, sweep: Iterable[tuple[str, Any]]) -> str:
    parts = [f"{k}={format_value(v)}" for k, v in sweep]
    return f"{method}@{','.join(parts)}" if parts else method
