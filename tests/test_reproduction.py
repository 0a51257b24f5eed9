"""The committed reproduction report: what it states about a run, from the run's own files."""

import json

import pandas as pd
import pytest

from trpo_bench.analysis import claims, prose
from trpo_bench.analysis.reproduction import DISCUSSION, refresh_report, write_report

CLAIMS = [
    {
        "id": "1",
        "statement": "a beats b",
        "paper": "A was best. (sec. 8.1)",
        "envs": ["Hopper-v5"],
        "better": "a",
        "worse": "b",
        "metric": "final_eval_return",
    }
]


def _results(tmp_path, commits):
    res = tmp_path / "results"
    rows = []
    for i, (method, score) in enumerate([("a", 100.0), ("a", 110.0), ("b", 1.0), ("b", 2.0)]):
        folder = res / f"runs/Hopper-v5/{method}/seed{i}"
        folder.mkdir(parents=True)
        summary = {"git_commit": commits[i % len(commits)], "versions": {"torch": "2.13.0"}}
        (folder / "summary.json").write_text(json.dumps(summary))
        rows.append(
            {"env": "Hopper-v5", "method": method, "seed": i, "status": "completed",
             "env_steps": 1e6, "final_eval_return": score}
        )  # fmt: skip
    (res / "tables").mkdir()
    (res / "plots").mkdir()
    runs = pd.DataFrame(rows)
    runs.to_csv(res / "tables/runs.csv", index=False)
    results = claims.evaluate_claims(CLAIMS, runs, samples=500)
    results.to_csv(res / "tables/claims_comparisons.csv", index=False)
    claims.claim_verdicts(results).to_csv(res / "tables/claims.csv", index=False)
    return res


def test_report_states_the_commit_budget_and_each_verdict_beside_the_paper(tmp_path):
    res = _results(tmp_path, ["abc123"])
    out = tmp_path / "docs"
    out.mkdir()
    (out / DISCUSSION).write_text("why: budgets\n")
    grid = {"methods": ["a", "b"], "seeds": [0, 1, 2, 3], "claims": CLAIMS}
    page = write_report(res, grid, out, "config/claims.yaml", "snakemake X", ["Hopper-v5"])
    text = page.read_text()
    assert "| commit of the runs | `abc123` |" in text
    assert "1M steps (0.5% of the paper's 200M)" in text
    assert "4 of 4 planned runs completed" in text
    assert "- **The paper:** A was best. (sec. 8.1)" in text
    assert "- **Here: HOLDS**" in text  # every seed of a beat every seed of b
    # 2 vs 2 seeds: 6 splits, 2 as extreme (p = 0.333; Holm over one comparison: the same)
    assert "| all | a > b | 2 | 1.00 [1.00, 1.00] | 0.333 (Holm 0.333) | holds | 100% |" in text
    assert (out / DISCUSSION).read_text() == "why: budgets\n"  # kept by hand, never rewritten
    assert (out / "claims.csv").exists() and (out / "runs.csv").exists()


def test_report_says_when_runs_come_from_several_commits(tmp_path):
    res = _results(tmp_path, ["abc123", "def456-dirty"])
    grid = {"methods": ["a", "b"], "seeds": [0, 1, 2, 3], "claims": CLAIMS}
    text = write_report(res, grid, tmp_path / "docs", "g.yaml", "cmd", ["Hopper-v5"]).read_text()
    assert "more than one commit: not one experiment" in text
    assert "uncommitted changes" in text


def test_a_refreshed_page_keeps_the_runs_header_and_re_decides_from_its_tables(tmp_path):
    res = _results(tmp_path, ["abc123"])
    out = tmp_path / "docs"
    grid = {"methods": ["a", "b"], "seeds": [0, 1, 2, 3], "claims": CLAIMS}
    write_report(res, grid, out, "g.yaml", "cmd", ["Hopper-v5"])
    pd.DataFrame([{"env": "Hopper-v5", "method": m, "variant": m} for m in "ab"]).to_csv(
        out / "comparison.csv", index=False
    )
    runs = pd.read_csv(out / "runs.csv").assign(variant=lambda r: r["method"])
    runs.to_csv(out / "runs.csv", index=False)
    (out / "discussion.template.md").write_text(
        "<!-- facts\n2: the seeds per method\n-->\n"
        "a scores {{runs mean Hopper-v5 a final_eval_return}} with 2 seeds; "
        "P = {{comparisons p 1 all a b}}, {{claims verdict 1}}.\n"
    )
    text = refresh_report(out, grid, "g.yaml", "cmd2", {}).read_text()
    assert "| commit of the runs | `abc123` |" in text  # from the page: no run folder here
    assert "- **Here: HOLDS**" in text
    assert (out / DISCUSSION).read_text().endswith("a scores 105 with 2 seeds; P = 1.00, holds.\n")
    assert "[discussion.md](discussion.md)" in text


def test_prose_reads_every_result_from_the_tables_and_lists_every_other_number():
    runs = pd.DataFrame(
        {"env": ["E", "E"], "variant": ["m", "m"], "ret": [1.0, 3.0], "fwd": [0.5, 1.0]}
    )
    tables = {"runs": runs}
    assert (
        prose.render("{{runs mean E m ret}} ({{runs range E m ret-fwd}})", tables) == "2 (0 to 2)"
    )
    assert prose.render("{{runs mean E m ret fmt=.1f}}", tables) == "2.0"
    # a grid linked to the long one (docs/reproduction/long/NAME/runs) reads the same way
    assert prose.render("{{long/x range E m ret}}", {"long/x": runs}) == "1 to 3"
    with pytest.raises(ValueError, match="runs mean E x ret"):
        prose.render("{{runs mean E x ret}}", tables)  # no such rows: never a made-up number
    template = (
        "<!-- facts\n0.99: the paper's discount\n-->\ngamma 0.99, claim 1, Table 2, 1,560 and 25%"
    )
    assert prose.unlisted_numbers(template) == ["1,560", "25%"]
    assert prose.render(template, tables).startswith("gamma 0.99")
    # a rerun on other seeds is read as the page's comparisons are, from its own table
    row = {"claim": "1", "scope": "E", "better": "a", "worse": "b", "yardstick": "deterministic",
           "p_improvement": 0.52, "verdict": "undecided"}  # fmt: skip
    stability = {"stability": pd.DataFrame([row])}
    assert prose.render("{{stability p 1 E a b}}, {{stability verdict 1 E a b}}", stability) == (
        "0.52, undecided"
    )


def test_the_committed_discussion_states_no_number_its_tables_do_not_hold():
    """docs/reproduction/discussion.md is rendered from its template: every result in it is a
    placeholder read from the folder's CSVs, every other number is listed with its source, and
    rendering the template again gives the committed page (it cannot drift from its data)."""
    from pathlib import Path

    from trpo_bench.analysis.reproduction import DISCUSSION_TEMPLATE, render_discussion

    folder = Path(__file__).resolve().parents[1] / "docs" / "reproduction"
    template = (folder / DISCUSSION_TEMPLATE).read_text()
    assert prose.unlisted_numbers(template) == []
    committed = (folder / DISCUSSION).read_text()
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "reproduction"
        shutil.copytree(folder, copy)
        (copy / DISCUSSION).unlink()
        assert render_discussion(copy).read_text() == committed


def test_the_readme_states_only_numbers_the_reproduction_pages_hold():
    """README's "What it finds" paragraph summarises docs/reproduction/: every number it
    quotes must stand on one of that folder's pages (which read theirs from the tables)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    start = readme.index("**What it finds:**")
    paragraph = readme[start : readme.index("\n\n", start)]
    pages = " ".join(p.read_text() for p in (root / "docs/reproduction").glob("*.md"))
    held = {m.group(0) for m in prose.NUMBER.finditer(pages)}
    quoted = prose.unlisted_numbers(paragraph)
    assert quoted, "the paragraph quotes no number: the check would test nothing"
    assert [n for n in quoted if n not in held] == []


def test_the_page_sets_round_ones_baselines_and_a_rerun_on_new_seeds_beside_its_own(tmp_path):
    res = _results(tmp_path, ["abc123"])
    out = tmp_path / "docs"
    (out / "round-one").mkdir(parents=True)
    # round one: b scored 0.5 and 0.7 with 5 episodes; now 1.0 and 2.0, both above
    pd.DataFrame(
        [{"env": "Hopper-v5", "method": "b", "seed": s, "eval_episodes": 5,
          "final_eval_return": r} for s, r in ((2, 0.5), (3, 0.7))]
    ).to_csv(out / "round-one/baselines.csv", index=False)  # fmt: skip
    # a rerun on other seeds where a no longer beats b on Hopper-v5: one verdict of one moves
    (out / "stability").mkdir()
    rerun = claims.evaluate_claims(
        CLAIMS,
        pd.DataFrame(
            [{"env": "Hopper-v5", "method": m, "seed": s, "final_eval_return": r}
             for m, s, r in (("a", 5, 1.0), ("a", 6, 3.0), ("b", 7, 2.0), ("b", 8, 2.5))]
        ),
        samples=500,
    )  # fmt: skip
    rerun.to_csv(out / "stability/Hopper-v5.csv", index=False)
    grid = {"methods": ["a", "b"], "seeds": [0, 1, 2, 3], "claims": CLAIMS}
    (res / "runs/Hopper-v5/a/seed0/summary.json").write_text(
        json.dumps({"git_commit": "abc123", "config": {"eval_episodes": 10}})
    )
    text = write_report(res, grid, out, "g.yaml", "cmd", ["Hopper-v5"]).read_text()
    assert "| evaluation | 10 episodes on fixed seeds, deterministic actions" in text
    assert "## The baselines, round one and now" in text
    assert "(its evaluations had 5 episodes each)" in text
    assert "| Hopper-v5 | b | 0.6 (0.5 to 0.7) | 1.5 (1.0 to 2.0) | 1.00 [1.00, 1.00] |" in text
    assert "## Verdicts on other seeds: Hopper-v5" in text
    # the other yardsticks have no scores here: no comparison to set side by side
    assert "**0 of 1 comparisons on Hopper-v5 give the same verdict on the new seeds** " in text
    assert "(1 from holds to undecided)." in text
    assert "| this page (2 seeds) | new seeds (2 seeds) |" in text
    assert "| 1 | deterministic | a vs b | 1.00 [1.00, 1.00] holds | 0.50 [" in text
    # the kept data are inputs: the page's rewrite leaves them as they were
    assert len(pd.read_csv(out / "round-one/baselines.csv")) == 2
