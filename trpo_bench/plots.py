"""Learning-curve figures: return against env steps, one line per method, mean and CI band.

Inputs are the DataFrames of :mod:`trpo_bench.analysis` (``learning_curves`` and the
comparison table, which names the variant of each swept method that is shown: its best).
:func:`figure4` lays out the paper's four locomotion tasks with the paper's methods, like its
Figure 4; :func:`env_figure` shows one env with every method of the grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from trpo_bench.analysis import budget_text, shown_variants

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
) -> int:
    """Draw ``env``'s curves on ``ax``: one line per method (a swept method at its best value,
    in the label when ``label_sweeps``), its CI as a band. Returns the number of lines."""
    lines, swept = 0, []
    for (e, method), variant in shown_variants(table).items():
        c = curves[(curves["env"] == env) & (curves["variant"] == variant)]
        if e != env or c.empty or (methods is not None and method not in methods):
            continue
        value = _swept_value(variant)
        label = f"{method} ({value})" if value and label_sweeps else method
        color = colors.get(method)
        ax.plot(c["env_steps"], c["return_mean"], label=label, lw=1.5, color=color)
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
    # The budget as a share of the paper's, so that a quick look says it is one.
    steps = curves.loc[curves["env"] == env, "env_steps"]
    budget = budget_text(env, float(steps.max())) if len(steps) else ""
    ax.set_title(f"{env}\n{budget}" if budget else env, fontsize="medium")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 50k, 1M
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return lines


def _methods(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(m for (_e, m) in shown_variants(table)))


def env_figure(
    curves: pd.DataFrame, table: pd.DataFrame, env: str, confidence: float = 0.95
) -> Figure:
    """One env's learning curves, every method of the grid; the legend outside the axes, so
    that it never hides a curve."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    if plot_env(ax, curves, table, env, method_colors(_methods(table))):
        fig.legend(
            *ax.get_legend_handles_labels(),
            loc="outside right upper",
            fontsize="small",
            title=f"mean, {confidence:.0%} CI\nover seeds",
        )
    return fig


def figure4(
    curves: pd.DataFrame, table: pd.DataFrame, envs: Sequence[str], confidence: float = 0.95
) -> Figure:
    """The paper's Figure 4: its four locomotion tasks (those the grid runs; every env of the
    grid if it runs none of them), its methods only, one legend for all panels."""
    panels = [e for e in PAPER_ENVS if e in envs] or list(envs)
    return grid_figure(curves, table, panels, confidence, methods=PAPER_METHODS)


def grid_figure(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    envs: Sequence[str],
    confidence: float = 0.95,
    methods: Sequence[str] | None = None,
) -> Figure:
    """``envs`` side by side, one legend for all panels below them (``methods``: only these);
    a swept method's best value per env is written in its panel."""
    ncols = min(4, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows + 0.8), layout="constrained", squeeze=False
    )
    colors = method_colors(_methods(table))
    handles: dict[str, object] = {}
    for ax, env in zip(axes.flat, envs, strict=False):
        plot_env(ax, curves, table, env, colors, label_sweeps=False, methods=methods)
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 5),
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
