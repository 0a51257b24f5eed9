"""trpo-bench: the comparison of Schulman et al. 2015 as a Snakemake workflow.

    snakemake --cores all                                   # the quick grid (config/config.yaml)
    snakemake --cores 64 --configfile config/paper.yaml     # the paper's scale
    snakemake --workflow-profile workflow/profiles/slurm --configfile config/paper.yaml

One train job per env x method (x swept value) x seed, then tables, plots and an MLflow summary
run. config/README.md explains the grid files; the logic lives in trpo_bench (grid, analysis,
plots); workflow/scripts/ is thin glue.
"""

import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from trpo_bench.config import ConfigError
from trpo_bench.grid import checked_runs, expand_grid, schema_error_message


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
except ConfigError as e:
    raise WorkflowError(f"config error: {e}") from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/mlflow.smk"


rule all:
    input:
        list(TABLES.values()),
        PLOTS,
        MLFLOW_SUMMARY,
    default_target: True
