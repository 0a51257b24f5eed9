"""Learning-curve figures: return against env steps, one line per method, mean and CI band.

Inputs are the DataFrames of :mod:`trpo_bench.analysis.tables` (``learning_curves`` and the
comparison table, which names the variant of each swept method that is shown: its best).
:func:`figure4` lays out the paper's four locomotion tasks with the paper's methods, like its
Figure 4; :func:`env_figure` shows one env with every method of the grid. Curves come on a
shared env-step grid per env (:func:`trpo_bench.analysis.tables.learning_curves`), so every line of
an
env is read at the same x values. Where the reference data has levels for an env (Atari: a
random and a human player's score and the paper's TRPO score, Table 1), they are drawn as
horizontal lines and the y range covers them, so that noise near the random score does not
look like a trend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from trpo_bench.analysis.tables import budget_text, reference_levels, shown_variants

FORMATS = ("png", "pdf")

# The paper's Figure 4: the four locomotion tasks and the methods it plots (max-KL on
# cart-pole only); the suite's other methods (vpg, trpo-gae) appear in the per-env figures.
PAPER_ENVS = ("InvertedPendulum-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5")
PAPER_METHODS = (
    "trpo-single-path",
    "trpo-vine",
    "natural-gradient",
    "max-kl",
    "empirical-fim",
    "cem",
    "cma-es",
    "rwr",
)


# Reference levels (random, human, the paper's TRPO scores): grey, one dash style each.
LEVEL_STYLES = ((0, (2, 2)), (0, (6, 2)), (0, (6, 2, 1, 2)), (0, (1, 1)))
LEVEL_GID = "reference-level"


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, the same in every panel and figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    palette = [*cycle, *plt.get_cmap("tab20").colors]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _swept_value(variant: str) -> str:
    return variant.split("@", 1)[1] if "@" in variant else ""


def plot_env(
    ax: Axes,
    curves: pd.DataFrame,
    table: pd.DataFrame,
    env: str,
    colors: dict[str, str],
    label_sweeps: bool = True,
    ylabel: str = "evaluation return",
    methods: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
) -> int:
    """Draw ``env``'s curves on ``ax``: one line per method (a swept method at its best value,
    in the label when ``label_sweeps``), its CI as a band; and ``env``'s published reference
    levels (:func:`trpo_bench.analysis.tables.reference_levels`) as grey horizontal lines, with a y
    range that covers them. Returns the number of method lines."""
    lines, swept = 0, []
    for (e, method), variant in shown_variants(table).items():
        c = curves[(curves["env"] == env) & (curves["variant"] == variant)]
        if e != env or c.empty or (methods is not None and method not in methods):
            continue
        value = _swept_value(variant)
        label = f"{method} ({value})" if value and label_sweeps else method
        color = colors.get(method)
        # A short curve (an evaluation only at the end) gets markers, or it would not show.
        marker = "o" if len(c) < 5 else None
        ax.plot(
            c["env_steps"], c["return_mean"], label=label, lw=1.5, color=color, marker=marker, ms=4
        )
        ax.fill_between(
            c["env_steps"], c["return_ci_low"], c["return_ci_high"], color=color, alpha=0.2, lw=0
        )
        if value:
            swept.append(f"{method}: {value}")
        lines += 1
    if swept and not label_sweeps:
        ax.text(0.02, 0.98, "\n".join(swept), transform=ax.transAxes, va="top", fontsize="x-small")
    if not lines:
        ax.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=ax.transAxes)
    draw_levels(ax, reference_levels(reference or {}, env))
    ax.set_xlim(left=0)
    # The budget as a share of the paper's, so that a quick look says it is one.
    steps = curves.loc[curves["env"] == env, "env_steps"]
    budget = budget_text(env, float(steps.max())) if len(steps) else ""
    ax.set_title(f"{env}\n{budget}" if budget else env, fontsize="medium")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 50k, 1M
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return lines


def draw_levels(ax: Axes, levels: Sequence[tuple[str, float]]) -> None:
    """Horizontal reference lines (label, value), and a y range covering them and the data:
    on Pong (random -20.4, the paper's TRPO 20.9) a run near -21 is then seen as what it is,
    near the random score, rather than as a trend inside an autoscaled -21..-19.6."""
    if not levels:
        return
    low, high = ax.get_ylim() if ax.has_data() else (math.inf, -math.inf)
    values = [v for _, v in levels]
    low, high = min(low, *values), max(high, *values)
    for (label, value), dash in zip(levels, LEVEL_STYLES * len(levels), strict=False):
        line = ax.axhline(value, color="0.35", lw=1.0, ls=dash, label=label, zorder=0.5)
        line.set_gid(LEVEL_GID)
        # Named in the panel too (a grid figure's shared legend lists methods only).
        ax.text(
            0.99,
            value,
            label.split(":")[0],
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize="x-small",
            color="0.3",
        )
    pad = 0.05 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)


def _methods(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(m for (_e, m) in shown_variants(table)))


def env_figure(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    env: str,
    confidence: float = 0.95,
    reference: Mapping[str, Any] | None = None,
) -> Figure:
    """One env's learning curves, every method of the grid (and ``env``'s reference levels);
    the legend outside the axes, so that it never hides a curve."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    colors = method_colors(_methods(table))
    if plot_env(ax, curves, table, env, colors, reference=reference) or ax.get_lines():
        fig.legend(
            *ax.get_legend_handles_labels(),
            loc="outside right upper",
            fontsize="small",
            title=f"mean, {confidence:.0%} CI\nover seeds",
        )
    return fig


def figure4(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    envs: Sequence[str],
    confidence: float = 0.95,
    reference: Mapping[str, Any] | None = None,
) -> Figure:
    """The paper's Figure 4: its four locomotion tasks (those the grid runs; every env of the
    grid if it runs none of them), its methods only, one legend for all panels."""
    panels = [e for e in PAPER_ENVS if e in envs] or list(envs)
    return grid_figure(
        curves, table, panels, confidence, methods=PAPER_METHODS, reference=reference
    )


def grid_figure(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    envs: Sequence[str],
    confidence: float = 0.95,
    methods: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
) -> Figure:
    """``envs`` side by side, one legend for all panels below them (``methods``: only these);
    a swept method's best value per env is written in its panel, and an env's reference
    levels (Atari) are drawn in it."""
    ncols = min(4, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        # at least 6 in wide, so that one panel's shared legend is not cut off
        figsize=(max(4.2 * ncols, 6.0), 3.4 * nrows + 0.8),
        layout="constrained",
        squeeze=False,
    )
    colors = method_colors(_methods(table))
    handles: dict[str, object] = {}
    for ax, env in zip(axes.flat, envs, strict=False):
        plot_env(
            ax, curves, table, env, colors, label_sweeps=False, methods=methods, reference=reference
        )
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if h.get_gid() != LEVEL_GID:
                handles.setdefault(label, h)
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 5, 2 * ncols + 1),
            fontsize="small",
            title=f"mean, {confidence:.0%} CI over seeds",
        )
    return fig


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` and close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.{fmt}" for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
