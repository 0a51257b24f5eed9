"""Ablations decided from committed runs (trpo_bench.analysis.ablations, `trpo-bench ablations`)."""

import json
from pathlib import Path

import pandas as pd
import pytest
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


def test_a_pilots_two_keys_stay_undecided_at_two_seeds_and_the_choice_is_read_from_the_means(
    tmp_path, capsys
):
    # The baselines' pilot: two specs in one grid, 2 seeds each. Every candidate beats the
    # value it replaced on both seeds, yet 2 vs 2 seeds cannot make a split rare (p >= 1/3).
    committed = tmp_path / "runs"
    for method, key, scores in (
        ("cem", "decay", {5: [10.0, 12.0], 20: [30.0, 31.0]}),
        ("cma", "diag", {False: [50.0, 52.0], True: [40.0, 41.0]}),
    ):
        for value, returns in scores.items():
            for seed, ret in enumerate(returns):
                folder = committed / f"Swimmer-v5/{method}@{key}={value}/seed{seed}"
                folder.mkdir(parents=True)
                summary = {"status": "completed", "env": "Swimmer-v5", "method": method,
                           "seed": seed, "final_eval_return": ret, "git_commit": "abc",
                           "machine": "m", "config": {key: value, "eval_episodes": 10}}  # fmt: skip
                (folder / "summary.json").write_text(json.dumps(summary))
    specs = [
        {"question": "CEM decay?", "explanation": "a longer decay", "methods": "cem",
         "key": "decay", "baseline": 5, "chosen": 20},
        {"question": "Diagonal?", "explanation": "a diagonal", "methods": ["cma"],
         "key": "diag", "baseline": False, "chosen": False},
    ]  # fmt: skip
    grid = tmp_path / "pilot.yaml"
    grid.write_text(yaml.safe_dump({"ablation": specs, "committed_runs": str(committed)}))
    out = tmp_path / "ablations.md"
    assert cli.main(["ablations", str(grid), "--out", str(out)]) == 0
    page = out.read_text()
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table["verdict"]) == ["undecided", "undecided"]
    assert list(table["p_rank"].round(4)) == [0.3333, 0.3333]
    assert "## CEM decay?" in page and "## Diagonal?" in page
    assert "4 committed runs, commit `abc`, on m; 10 episodes per evaluation" in page
    assert (
        "The claims grid takes decay = 20, whose mean is higher on Swimmer-v5 "
        "(30.5 against 11.0 for decay = 5)." in page
    )
    assert (
        "The claims grid takes diag = False, whose mean is higher on Swimmer-v5 "
        "(51.0 against 40.5 for diag = True)." in page
    )
    # an entry without its keys is one clear line naming them
    grid.write_text(yaml.safe_dump({"ablation": [{"question": "q"}], "committed_runs": "x"}))
    assert cli.main(["ablations", str(grid), "--out", str(out)]) == 2
    assert "lacks explanation, methods, key, baseline" in capsys.readouterr().err


def test_the_grid_schema_takes_one_ablation_or_a_list_and_refuses_an_incomplete_one():
    import jsonschema

    root = Path(__file__).resolve().parents[1]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    ablation = {"$defs": schema["$defs"], **schema["properties"]["ablation"]}
    pilot = yaml.safe_load((root / "config/pilot-baselines.yaml").read_text())["ablation"]
    assert [spec["chosen"] for spec in pilot] == [20, False]
    jsonschema.validate(pilot, ablation)
    jsonschema.validate(SPEC, ablation)
    for bad in ([], [{"question": "q"}], {**SPEC, "chosen": [1]}, {**SPEC, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, ablation)
