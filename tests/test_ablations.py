"""Ablations decided from committed runs (trpo_bench.analysis.ablations, `trpo-bench ablations`)."""

import json

import pandas as pd
import yaml

from trpo_bench import cli
from trpo_bench.analysis import ablations
from trpo_bench.analysis.committed_runs import read_committed

SPEC = {
    "question": "Does the discount matter?",
    "explanation": "the discount",
    "methods": ["sp"],
    "key": "gamma",
    "baseline": 0.99,
}


def _commit(root, gamma, returns):
    for seed, ret in enumerate(returns):
        folder = root / f"Swimmer-v5/sp@gamma={gamma}/seed{seed}"
        folder.mkdir(parents=True)
        summary = {"status": "completed", "env": "Swimmer-v5", "method": "sp", "seed": seed,
                   "final_eval_return": ret, "config": {"gamma": gamma}, "git_commit": "abc",
                   "machine": "m"}  # fmt: skip
        (folder / "summary.json").write_text(json.dumps(summary))


def test_a_value_that_beats_the_baseline_on_every_seed_supports_the_explanation(tmp_path):
    _commit(tmp_path, 0.99, [20.0, 25, 30, 35, 40])
    _commit(tmp_path, 0.999, [150.0, 160, 170, 180, 190])
    _commit(tmp_path, 0.995, [21.0, 26, 31, 36, 41])
    runs = read_committed(tmp_path, progress=False)[0]
    table = ablations.ablation_table("gamma", SPEC, runs, samples=500).set_index("value")
    assert table.loc[0.999, "verdict"] == "holds" and table.loc[0.999, "p_improvement"] == 1.0
    assert table.loc[0.999, "p_rank"] == 2 / 252  # exact: 2 of the 252 splits as extreme
    assert table.loc[0.999, "baseline_mean"] == 30.0 and table.loc[0.999, "mean"] == 170.0
    assert table.loc[0.995, "verdict"] == "undecided"
    sentence = ablations.conclusion(SPEC, table.reset_index())
    assert sentence.startswith("The data support the discount as a cause")
    assert "sp with gamma = 0.999 on Swimmer-v5 (P = 1.00, 170 against 30)" in sentence


def test_a_value_that_only_loses_contradicts_and_the_cli_writes_the_page(tmp_path, capsys):
    committed = tmp_path / "runs"
    _commit(committed, 0.99, [100.0, 110, 120, 130, 140])
    _commit(committed, 0.999, [1.0, 2, 3, 4, 5])
    grid = tmp_path / "ablation-x.yaml"
    grid.write_text(yaml.safe_dump({"ablation": SPEC, "committed_runs": str(committed)}))
    out = tmp_path / "docs/ablations.md"
    assert cli.main(["ablations", str(grid), "--out", str(out)]) == 0
    page = out.read_text()
    assert "## Does the discount matter?" in page
    assert "**The data contradict the discount as a cause" in page
    assert "10 committed runs, commit `abc`, on m" in page
    assert list(pd.read_csv(out.with_suffix(".csv"))["verdict"]) == ["fails"]
    # a grid file without an ablation entry is one clear line
    grid.write_text(yaml.safe_dump({"committed_runs": str(committed)}))
    assert cli.main(["ablations", str(grid), "--out", str(out)]) == 2
    assert "has no `ablation` entry" in capsys.readouterr().err
