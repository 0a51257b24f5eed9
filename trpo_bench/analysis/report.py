"""HTML items of the Snakemake report (``snakemake --report report.html``): the tables as small
standalone pages, and the overview that opens the report with the answer.

The report shows an HTML item in a frame, and its landing page (``workflow/report/workflow.rst``)
includes :func:`overview_html`'s file inline, so the first screen is: the claims and their
verdicts, the grid's budget as a share of the paper's, the comparison table and the paper-style
figure. Tables are rendered by :meth:`pandas.DataFrame.to_html` (escaped), figures embedded as
base64 PNG, so each file stands alone.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from trpo_bench.analysis.tables import (
    budget_text,
    budgets,
    display_table,
    problems,
    quick_look_share,
    yardstick_text,
)

# Scoped to .trpo-report: the overview is also inlined into the report's landing page.
STYLE = """
.trpo-report { font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.4; }
.trpo-report table { border-collapse: collapse; margin: 0.5em 0 1em; }
.trpo-report th, .trpo-report td { border: 1px solid #ccc; padding: 2px 6px;
  text-align: left; vertical-align: top; }
.trpo-report th { background: #f0f0f0; }
.trpo-report .warn { background: #fff3cd; border: 1px solid #e0c060; padding: 4px 8px; }
.trpo-report .verdict-holds { color: #17692c; font-weight: bold; }
.trpo-report .verdict-fails { color: #a11; font-weight: bold; }
.trpo-report .verdict-undecided { color: #805b00; font-weight: bold; }
.trpo-report img { max-width: 100%; }
.prose.max-w-lg:has(.trpo-report) { max-width: 64rem; }
"""


def _esc(text: str) -> str:
    """``text`` safe as an element's content (quotes kept: "the paper's" stays readable)."""
    return html.escape(text, quote=False)


def table_html(df: pd.DataFrame) -> str:
    """``df`` as an HTML table (text escaped, no index, empty cells for missing values)."""
    return df.to_html(index=False, border=0, classes="trpo-table", na_rep="", escape=True)


def document(title: str, body: str) -> str:
    """A standalone HTML page (the report shows it in a frame)."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f'<body>\n<div class="trpo-report">\n{body}\n</div>\n</body>\n</html>\n'
    )


def _warning(text: str) -> str:
    return f'<p class="warn">{_esc(text)}</p>'


def _quick_look(table: pd.DataFrame) -> str:
    share = quick_look_share(table)
    if share is None:
        return ""
    return _warning(
        f"A quick look, not the paper's experiment: every run here had at most "
        f"{100 * share:.2g}% of the paper's sample budget. An ordering of methods at such "
        "budgets says nothing about the paper's claims; the claims' verdicts say `undecided` "
        "where these runs cannot separate the methods."
    )


def comparison_html(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    confidence: float = 0.95,
    title: str = "trpo-bench comparison",
    metric: str = "eval",
) -> str:
    """The comparison table (the rows of ``tables/comparison.md``) as a standalone page."""
    parts = [f"<h2>{_esc(title)}</h2>", _quick_look(table)]
    bad = problems(runs)
    if len(bad):
        items = "".join(
            f"<li>{_esc(f'{r.env} / {r.variant} / seed {r.seed}: {r.status}')}</li>"
            for r in bad.itertuples(index=False)
        )
        parts.append(
            _warning(
                f"{len(bad)} of {len(runs)} planned runs did not complete with a return; the "
                "means leave them out:"
            )
            + f"<ul>{items}</ul>"
        )
    parts += [
        f"<p>{_esc(yardstick_text(metric, confidence))}</p>",
        table_html(display_table(table, confidence)),
    ]
    return document(title, "\n".join(p for p in parts if p))


def verdicts_table(verdicts: pd.DataFrame) -> str:
    """The claims' verdicts (``tables/claims.csv``) as an HTML table, verdicts coloured."""
    shown = verdicts[["claim", "statement", "verdict", "counts"]].rename(
        columns={"counts": "comparisons"}
    )
    text = table_html(shown)
    for verdict in ("holds", "fails", "undecided"):
        text = text.replace(f"<td>{verdict}</td>", f'<td class="verdict-{verdict}">{verdict}</td>')
    return text


def claims_html(verdicts: pd.DataFrame, note: str, title: str = "The paper's claims") -> str:
    """The claims' verdicts as a standalone page, with the budget note (Markdown paragraphs,
    shown as plain text) above them."""
    body = [f"<h2>{_esc(title)}</h2>"]
    body += [
        f"<p>{_esc(par.strip().replace('**', ''))}</p>" for par in note.split("\n\n") if par.strip()
    ]
    if verdicts.empty:
        body.append("<p>This grid decides none of the paper's claims (see claims.md).</p>")
    else:
        body.append(verdicts_table(verdicts))
    return document(title, "\n".join(body))


def budget_lines(runs: pd.DataFrame, envs: Sequence[str]) -> list[str]:
    """Per env, the budget per run as a share of the paper's: ``Hopper-v5: 250K steps (0.12%
    of the paper's 200M)``."""
    return [
        f"{env}: {budget_text(env, steps)}"
        for env, steps in budgets(runs, envs).items()
        if math.isfinite(steps)
    ]


def overview_html(
    verdicts: pd.DataFrame,
    table: pd.DataFrame,
    runs: pd.DataFrame,
    envs: Sequence[str],
    figure: Path | str | None,
    confidence: float = 0.95,
    title: str = "trpo-bench",
    metric: str = "eval",
) -> str:
    """The answer on one page: the claims and their verdicts, the budget per env as a share of
    the paper's, the comparison (our final return and the comparable published numbers), and
    the paper-style figure (``figure``, a PNG, embedded)."""
    pct = f"{confidence:.0%}"
    shown = display_table(table, confidence)
    ours = table["seeds_planned"].fillna(0).astype(int) > 0
    compact = shown.loc[
        ours, ["env", "method", "seeds", f"final return [{pct} CI]", "published"]
    ].rename(columns={f"final return [{pct} CI]": f"final {metric} return [{pct} CI]"})
    parts = [
        f"<h2>{_esc(title)}: the answer</h2>",
        _quick_look(table),
        "<h3>The paper's claims</h3>",
        verdicts_table(verdicts)
        if not verdicts.empty
        else "<p>This grid decides none of the paper's claims (its envs and methods).</p>",
        "<h3>Budget per run, as a share of the paper's</h3>",
        "<ul>" + "".join(f"<li>{_esc(line)}</li>" for line in budget_lines(runs, envs)) + "</ul>",
        "<h3>Comparison</h3>",
        f"<p>{_esc(YARDSTICK_SHORT[metric])} Mean over seeds with a {pct} bootstrap "
        "interval. Published numbers only where they compare (same reward scale, a budget "
        "within a factor of 2), else marked NOT COMPARABLE; the full table is "
        "comparison.html.</p>",
        table_html(compact),
    ]
    if figure is not None and Path(figure).exists():
        data = base64.b64encode(Path(figure).read_bytes()).decode("ascii")
        parts += [
            "<h3>Learning curves, laid out like the paper's Figure 4</h3>",
            f'<img alt="learning curves (figure4.png)" src="data:image/png;base64,{data}">',
        ]
    return document(f"{title}: the answer", "\n".join(p for p in parts if p))


YARDSTICK_SHORT = {
    "eval": "Evaluation return: every method's policy acting deterministically on the same "
    "seeded episodes.",
    "train": "Training return: the episodes of each iteration's batch.",
}
