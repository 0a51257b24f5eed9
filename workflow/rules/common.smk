# Shared by every rule: paths of the grid's outputs and the lookups of a train job's settings.
# RUNS (trpo_bench.grid.Run, one per train job) comes from the Snakefile, already checked.

import re
import shlex
import sys

from trpo_bench.committed import COMMITTED_PROGRESS
from trpo_bench.grid import (
    env_slug,
    expected_runs_records,
    resources_for,
    tracking_uri,
    train_argv,
)

RESULTS = config["results"].rstrip("/")
MLFLOW_URI = tracking_uri(config, RESULTS)
# (env slug, variant, seed) -> Run: the train rule's wildcards name one run of the grid.
RUN_INDEX = {(r.env_slug, r.variant, str(r.seed)): r for r in RUNS}
ENVS = list(dict.fromkeys(r.env for r in RUNS))  # the grid's envs that have runs, in order

RUN_DIR = f"{RESULTS}/runs/{{env}}/{{variant}}/seed{{seed}}"
TABLES = {
    "runs": f"{RESULTS}/tables/runs.csv",
    "summary": f"{RESULTS}/tables/summary.csv",
    "comparison": f"{RESULTS}/tables/comparison.csv",
    "markdown": f"{RESULTS}/tables/comparison.md",
    "curves": f"{RESULTS}/tables/curves.csv",
}
CLAIMS = {
    "markdown": f"{RESULTS}/tables/claims.md",
    "verdicts": f"{RESULTS}/tables/claims.csv",
    "comparisons": f"{RESULTS}/tables/claims_comparisons.csv",
    "iqm": f"{RESULTS}/tables/iqm.csv",
    "profile": f"{RESULTS}/plots/performance_profile",
}
PLOT_STEMS = [f"{RESULTS}/plots/{env_slug(env)}" for env in ENVS] + [f"{RESULTS}/plots/figure4"]
PLOTS = [f"{stem}.{fmt}" for stem in PLOT_STEMS for fmt in ("png", "pdf")]
MLFLOW_STORE = f"{RESULTS}/mlflow_experiment.json"
MLFLOW_SUMMARY = f"{RESULTS}/mlflow_summary.json"
REFERENCE = (
    config["reference"]
    if os.path.isabs(config["reference"])
    else os.path.join(workflow.basedir, config["reference"])
)


wildcard_constraints:
    # Distinct names only: one alternative per run made planning grow with the grid's square.
    env="|".join(re.escape(e) for e in sorted({r.env_slug for r in RUNS})),
    variant="|".join(re.escape(v) for v in sorted({r.variant for r in RUNS})),
    seed=r"\d+",


def run_of(wildcards):
    return RUN_INDEX[(wildcards.env, wildcards.variant, wildcards.seed)]


def train_resources(wildcards):
    return resources_for(config, run_of(wildcards).env)


def train_command(wildcards, output, threads):
    """The trpo-bench command line of one run, run by this Python (so the jobs use the
    interpreter and trpo-bench install that plan them, on a cluster node too)."""
    out = os.path.dirname(output.summary)
    argv = train_argv(run_of(wildcards), config, out, MLFLOW_URI, threads)
    return shlex.join([sys.executable, "-m", "trpo_bench", *argv])


def committed_inputs(wildcards):
    """The committed files rule adopt copies for this run; a path that is not there where the
    run is not adopted (rule train makes its files then)."""
    folder = run_of(wildcards).folder
    source = ADOPTED.get(folder)
    if source is None:
        return {"summary": f"{RESULTS}/{folder}/.not-committed"}
    return {"summary": f"{source}/summary.json", "progress": f"{source}/{COMMITTED_PROGRESS}"}


def all_run_files(kind):
    return [f"{RESULTS}/{r.folder}/{kind}" for r in RUNS]
