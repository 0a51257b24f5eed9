"""The committed reproduction report: what it states about a run, from the run's own files."""

import json

import pandas as pd

from trpo_bench.analysis import claims
from trpo_bench.analysis.reproduction import DISCUSSION, write_report

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
    assert "| all | a > b | 2 | 1.00 [1.00, 1.00] | holds |" in text
    assert (out / DISCUSSION).read_text() == "why: budgets\n"  # kept by hand, never rewritten
    assert (out / "claims.csv").exists() and (out / "runs.csv").exists()


def test_report_says_when_runs_come_from_several_commits(tmp_path):
    res = _results(tmp_path, ["abc123", "def456-dirty"])
    grid = {"methods": ["a", "b"], "seeds": [0, 1, 2, 3], "claims": CLAIMS}
    text = write_report(res, grid, tmp_path / "docs", "g.yaml", "cmd", ["Hopper-v5"]).read_text()
    assert "more than one commit: not one experiment" in text
    assert "uncommitted changes" in text
