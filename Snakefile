"""trpo-bench: the comparison of Schulman et al. 2015 as a Snakemake workflow.

    snakemake --cores 64                                  # the full comparison (config/config.yaml)
    snakemake --cores all --configfile config/quick.yaml  # the quick look: 30 min on 2 cores
    snakemake --workflow-profile workflow/profiles/slurm  # the full comparison on SLURM

One train job per env x method (x swept value) x seed, then tables, plots and an MLflow summary
run. Before it plans them, the main process prints the grid's estimated CPU-hours and wall time
on the given cores (trpo_bench/analysis/estimate.py, from the measured rates of
trpo_bench/presets/rates.yaml). config/README.md explains the grid files; the logic lives in
trpo_bench (grid, estimate, analysis, plots); workflow/scripts/ is thin glue.
"""

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from trpo_bench.config import ConfigError
from trpo_bench.analysis.estimate import estimate_lines
from trpo_bench.committed import adoptable_runs
from trpo_bench.grid import check_grid_claims, checked_runs, expand_grid, schema_error_message


min_version("8.20")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# Check the whole grid before any job is planned: structure (JSON schema), then every name and
# value against trpo-bench's registries. One clear message; nothing runs. (A job running on a
# cluster node re-reads this file; the checks, which import torch, were done by then.)
try:
    validate(config, "workflow/schemas/config.schema.yaml")
except WorkflowError as e:
    raise WorkflowError(f"config error: {schema_error_message(e)}") from None
try:
    RUNS = checked_runs(config) if workflow.is_main_process else expand_grid(config)
    if workflow.is_main_process:
        check_grid_claims(config)
    # Runs committed under the grid's committed_runs folder are adopted, not trained again
    # (trpo_bench.committed); planned by the main process only (rule adopt is local).
    ADOPTED = (
        adoptable_runs(config, RUNS, config["results"].rstrip("/"), workflow.basedir)
        if workflow.is_main_process
        else {}
    )
except ConfigError as e:
    raise WorkflowError(f"config error: {e}") from None
TO_TRAIN = [r for r in RUNS if r.folder not in ADOPTED]


def given_cores():
    try:
        return workflow.cores
    except WorkflowError:  # no --cores (e.g. a cluster profile's --jobs instead)
        return 1


# How long the grid will take, from measured rates, before anything runs (stderr; the full grid
# takes days of CPU time, and a user who wanted the quick look should know at once).
if workflow.is_main_process:
    if ADOPTED:
        print(
            f"trpo-bench: {len(ADOPTED)} of the grid's {len(RUNS)} runs are committed under "
            f"{config['committed_runs']} and are adopted, not trained again.",
            file=sys.stderr,
        )
    for line in estimate_lines(
        config,
        TO_TRAIN,
        given_cores(),
        jobs_at_once=workflow.nodes,
        default_grid=not workflow.overwrite_configfiles,
    ):
        print(line, file=sys.stderr)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/mlflow.smk"


rule all:
    input:
        # Every run's files are targets too: a deleted run folder or progress.csv is brought
        # back (the train job resumes from its checkpoint), not ignored as an intermediate.
        all_run_files("summary.json"),
        all_run_files("progress.csv"),
        list(TABLES.values()),
        PLOTS,
        CLAIMS["markdown"],
        MLFLOW_SUMMARY,
        # config/claims.yaml: the committed report of the run (trpo_bench.analysis.reproduction)
        [rules.reproduction.output.page] if config.get("reproduction") else [],
    default_target: True
