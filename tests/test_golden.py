"""Same seed and config, same numbers across refactors (issue 16).

``tests/data/golden/<method>.csv`` holds the progress.csv of a short run of every method (Atari
aside), recorded at commit 5102e79, before the package was re-laid out. A run today must give
the same file, every column but wall time (one torch thread, this CPU build of torch 2.13):
text and integer columns exactly, float columns to a relative 1e-12.

Why not to the last digit: numpy's OpenBLAS and torch's kernels are chosen by CPU, so the same
code rounds differently on another CPU. On an AVX2-only AMD EPYC every column of every method
matches bit for bit except CMA-ES's ``sigma`` and ``search_std_mean`` (the cma library's
eigendecomposition), off by 3e-15 relative. 1e-12 is far above such rounding and far below any
change of the arithmetic: the smallest one recorded here, the fused Adam of PPO's value net,
moved columns by 6e-9. A change that is meant to alter results re-records them with
``TRPO_BENCH_RECORD_GOLDEN=1 pytest tests/test_golden.py`` and says why in its commit.
"""

import os
from pathlib import Path

import pandas as pd
import pytest

from trpo_bench.resolve import build_config
from trpo_bench.run.trainer import train

GOLDEN = Path(__file__).parent / "data" / "golden"
FLOAT_RTOL = 1e-12  # float rounding of another CPU's kernels, not a change of arithmetic

# Tiny budgets on cart-pole: three iterations, one evaluation in the middle and one at the end.
CASES = {
    "trpo-single-path": {"hidden_sizes": [16]},
    "trpo-vine": {"steps_per_iter": 600, "vine_branch_length": 20},
    "natural-gradient": {},
    "max-kl": {},
    "empirical-fim": {},
    "trpo-gae": {"num_envs": 1, "vf_epochs": 2},
    "ppo": {"num_envs": 1, "vf_epochs": 2, "ppo_epochs": 2},
    "vpg": {},
    "rwr": {"rwr_fit_iters": 5},
    "cem": {"steps_per_iter": 200},
    "cma-es": {"steps_per_iter": 200},
}


def _cfg(method: str):
    settings = {
        "iterations": 3,
        "steps_per_iter": 300,
        "num_envs": 2,
        "seed": 11,
        "eval_every": 2,
        "eval_episodes": 2,
        "mlflow": False,
        **CASES[method],
    }
    return build_config("InvertedPendulum-v5", method, layers=[("golden", settings)])


def _progress(path: Path) -> pd.DataFrame:
    rows = pd.read_csv(path, keep_default_na=False)
    return rows.drop(columns=[c for c in rows.columns if c.endswith("_time_s")])


@pytest.mark.parametrize("method", sorted(CASES))
def test_a_short_run_gives_the_recorded_numbers(method, tmp_path):
    train(_cfg(method), tmp_path / "run", log=lambda _m: None)
    got = tmp_path / "run" / "progress.csv"
    golden = GOLDEN / f"{method}.csv"
    if os.environ.get("TRPO_BENCH_RECORD_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(got.read_bytes())
    want, have = _progress(golden), _progress(got)
    pd.testing.assert_frame_equal(have, want, check_exact=False, rtol=FLOAT_RTOL, atol=0.0)
    for column in want.columns:  # the tolerance is for floats only
        if want[column].dtype.kind != "f":
            pd.testing.assert_series_equal(have[column], want[column], check_exact=True)
