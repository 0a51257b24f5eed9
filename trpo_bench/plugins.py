"""Plug-ins through entry points: one loop for the method and the env groups.

A plug-in that fails to load or to pass its registry's checks is left out with one warning
line on stderr naming it, its entry point, its distribution and the reason; the built-ins and
the other plug-ins load as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

T = TypeVar("T")


def origin(ep: EntryPoint) -> str:
    """The distribution that ships ``ep`` (its name), else the entry point's own value."""
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def load_plugins(group: str, what: str, load: Callable[[EntryPoint], T]) -> Iterator[T]:
    """``load(ep)`` for each entry point of ``group``, lazily (a caller may register each one
    before the next is checked); one that raises is left out with a warning naming the
    plug-in ``what`` ("method", "env")."""
    for ep in entry_points(group=group):
        try:
            item = load(ep)
        except Exception as e:  # a broken plug-in must never break the built-ins
            print(
                f"trpo-bench: warning: plug-in {what} {ep.name!r} ({ep.value}, from "
                f"{_distribution(ep)}) is left out: {type(e).__name__}: {e}",
                file=sys.stderr,
            )
            continue
        yield item
