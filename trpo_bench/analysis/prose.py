"""Prose that cannot drift from its data: a Markdown template whose every result is a
placeholder read from the tables, and a check that it types no other number unexplained.

A placeholder is ``{{TABLE STAT ARGS... [fmt=SPEC]}}``:

* ``{{runs mean ENV VARIANT COLUMN}}`` (also ``min``, ``max``, ``range`` as "lo to hi", ``n``
  the runs): over the rows of ``runs`` (and ``long``, the long grid's committed runs, and
  ``long/NAME``, those under docs/reproduction/long/NAME/runs: the same columns) with that env
  and variant; COLUMN may be a difference of two columns, ``a-b`` (per run);
* ``{{comparisons p CLAIM SCOPE BETTER WORSE [yardstick=Y]}}`` (also ``ci`` as "[lo, hi]",
  ``verdict``, ``p_rank``, ``p_holm``), from claims_comparisons.csv (yardstick
  ``deterministic`` unless given); ``{{stability ...}}`` the same, from the reruns on other
  seeds (``stability/<env id>.csv``);
* ``{{claims verdict CLAIM}}`` (also ``per_env``, ``verdict_sampled``, ``verdict_training``);
* ``{{ablations p ABLATION ENV METHOD VALUE}}`` (also ``mean``, ``baseline_mean``, ``ci``,
  ``verdict``, ``p_rank``, ``seeds``), from ablations.csv.

Numbers print with ``fmt`` (default ``.0f`` for returns, ``.2f`` for P, ``.3f`` for p). A
placeholder whose rows are missing raises ValueError naming it: a page is never written with
a number its tables do not hold. Any other number the template states (a paper's figure, a
setting) must be listed, with its source, in the template's facts block::

    <!-- facts
    0.99: the paper's discount (Table 2)
    -->

:func:`unlisted_numbers` finds those that are not; ``tests/test_reproduction.py`` checks the
committed template with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from trpo_bench.analysis.claims import format_p

PLACEHOLDER = re.compile(r"\{\{\s*(.+?)\s*\}\}")
FACTS = re.compile(r"<!--\s*facts\b(.*?)-->", re.S)
# A number as prose states it: 1,560 / 0.99 / 10M / 25% / -20.4, not part of a name (v5, 2a).
NUMBER = re.compile(r"(?<![\w.\-/@=])-?\d+(?:,\d{3})*(?:\.\d+)?[KM%]?(?![\w.]\d|[\w])")
# Numbers that name a thing rather than state a result: claim 1, sec. 8.1, Table 2, eq. 14.
REFERENCE = re.compile(
    r"(?:claims?|sec\.|section|Table|Tables|Figure|eq\.|issue|seed|seeds?\s+\d+\s+and)\s*$",
    re.I,
)


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    if "-" in column and column not in frame:
        a, b = column.split("-", 1)
        return frame[a].to_numpy(float) - frame[b].to_numpy(float)
    return frame[column].to_numpy(float)


def _fmt(x: float, spec: str) -> str:
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x}")
    return format(x, spec)


def _one(rows: pd.DataFrame, what: str) -> pd.Series:
    if len(rows) != 1:
        raise ValueError(f"{what}: {len(rows)} rows match, not one")
    return rows.iloc[0]


def resolve(expr: str, tables: Mapping[str, pd.DataFrame]) -> str:
    """The text of one placeholder's expression (see the module docstring)."""
    words = expr.split()
    options = dict(w.split("=", 1) for w in words if "=" in w)
    words = [w for w in words if "=" not in w]
    table, stat, *args = words
    if table not in tables:
        raise ValueError(f"{{{{{expr}}}}}: no table {table!r} (have: {', '.join(tables)})")
    frame = tables[table]
    try:
        if table in ("runs", "long") or table.startswith("long/"):
            env, variant, column = args
            key = "variant" if "variant" in frame else "method"
            rows = frame[(frame["env"] == env) & (frame[key] == variant)]
            x = _values(rows, column)
            x = x[np.isfinite(x)]
            if stat == "n":
                return str(len(rows))
            if not len(x):
                raise ValueError("no values")
            spec = options.get("fmt", ".0f")
            if stat == "range":
                return f"{_fmt(x.min(), spec)} to {_fmt(x.max(), spec)}"
            return _fmt({"mean": x.mean(), "min": x.min(), "max": x.max()}[stat], spec)
        if table in ("comparisons", "stability"):
            claim, scope, better, worse = args
            yardstick = options.get("yardstick", "deterministic")
            row = _one(
                frame[
                    (frame["claim"].astype(str) == claim)
                    & (frame["scope"] == scope)
                    & (frame["better"] == better)
                    & (frame["worse"] == worse)
                    & (frame["yardstick"] == yardstick)
                ],
                expr,
            )
        elif table == "claims":
            (claim,) = args
            row = _one(frame[frame["claim"].astype(str) == claim], expr)
        elif table == "ablations":
            ablation, env, method, value = args
            rows = frame[
                (frame["ablation"] == ablation)
                & (frame["env"] == env)
                & (frame["method"] == method)
                & (frame["value"].astype(str) == value)
            ]
            row = _one(rows, expr)
        else:
            raise ValueError(f"unknown table {table!r}")
    except (KeyError, ValueError) as e:
        raise ValueError(f"{{{{{expr}}}}}: {e}") from None
    if stat == "ci":
        spec = options.get("fmt", ".2f")
        return f"[{_fmt(row['ci_low'], spec)}, {_fmt(row['ci_high'], spec)}]"
    if stat == "p":
        return _fmt(float(row["p_improvement"]), options.get("fmt", ".2f"))
    if stat in ("p_rank", "p_holm"):
        p = float(row[stat])
        _fmt(p, ".3f")  # a NaN p raises here, as every placeholder's does
        return format_p(p) if "fmt" not in options else _fmt(p, options["fmt"])
    value = row[stat]
    if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool):
        return _fmt(float(value), options.get("fmt", ".0f"))
    return str(value)


def render(template: str, tables: Mapping[str, pd.DataFrame]) -> str:
    """The template with every placeholder replaced and its facts block removed."""
    body = FACTS.sub("", template).lstrip("\n")
    return PLACEHOLDER.sub(lambda m: resolve(m.group(1), tables), body)


def facts(template: str) -> dict[str, str]:
    """The facts block: number -> its source."""
    block = FACTS.search(template)
    out = {}
    for line in (block.group(1) if block else "").splitlines():
        if ":" in line:
            number, source = line.split(":", 1)
            out[number.strip()] = source.strip()
    return out


def unlisted_numbers(template: str) -> list[str]:
    """Numbers the template states outside its placeholders, code spans, links' targets and
    references (claim 1, Table 2), that its facts block does not list."""
    listed = set(facts(template))
    prose = FACTS.sub("", template)
    prose = PLACEHOLDER.sub(" ", prose)
    prose = re.sub(r"`[^`]*`", " ", prose)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)
    found = []
    for m in NUMBER.finditer(prose):
        if REFERENCE.search(prose[max(0, m.start() - 20) : m.start()]):
            continue
        if m.group(0) not in listed:
            found.append(m.group(0))
    return found
