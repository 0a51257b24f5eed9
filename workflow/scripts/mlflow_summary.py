"""Glue for rule mlflow_summary: one MLflow run holding the grid's tables and plots."""

import json
import sys

import pandas as pd
from mlflow.tracking import MlflowClient

from trpo_bench.run.mlflow_log import (
    bound_tracking_calls,
    experiment_description,
    log_summary_run,
    set_experiment_description,
)

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)
bound_tracking_calls()

with open(sm.input.store) as f:
    store = json.load(f)
if store.get("experiment_id") is None:
    # rule mlflow_store found the store unreachable and said so: the tables and plots are the
    # results; the summary run is left out with the same warning, not a failed workflow.
    why = store.get("warning", "the MLflow store was unreachable")
    print(f"WARNING: no MLflow summary run: {why}", file=sys.__stderr__)
    with open(sm.output[0], "w") as f:
        json.dump({"run_id": None, "tracking_uri": sm.params.uri, "warning": why}, f, indent=2)
        f.write("\n")
    sys.exit(0)
experiment_id = store["experiment_id"]

comparison = next(p for p in sm.input.tables if p.endswith("comparison.csv"))
table = pd.read_csv(comparison)
metrics = {}
for row in table[table["seeds_planned"] > 0].itertuples(index=False):
    for metric in ("final_return_mean", "average_return_mean"):
        metrics[f"{metric}/{row.env}/{row.method}"] = float(getattr(row, metric))
params = {k: json.dumps(v) for k, v in sm.params.grid.items()}
params["train_jobs"] = sm.params.train_jobs
# How many finished training runs the experiment holds (a job whose MLflow logging failed
# warned in its log; a rerun job adds a run): a number to compare with train_jobs.
client = MlflowClient(tracking_uri=sm.params.uri)
finished = client.search_runs(
    [experiment_id], "attributes.status = 'FINISHED' and tags.env != ''", max_results=50_000
)
metrics["training_runs_finished_in_store"] = len(finished)
if len(finished) < sm.params.train_jobs:
    print(
        f"WARNING: the MLflow experiment holds {len(finished)} finished training runs for "
        f"{sm.params.train_jobs} training jobs; see the train logs for MLflow warnings",
        file=sys.stderr,
    )
run_id = log_summary_run(
    sm.params.uri,
    sm.params.experiment,
    "summary",
    params=params,
    metrics=metrics,
    artifacts={
        "tables": sm.input.tables,
        "plots": sm.input.plots,
        "claims": sm.input.claims,
        "report": sm.input.report,
    },
)
# The experiment's description now links the summary run (the results on one page).
set_experiment_description(client, experiment_id, experiment_description(experiment_id, run_id))
with open(sm.output[0], "w") as f:
    json.dump(
        {"run_id": run_id, "tracking_uri": sm.params.uri, "experiment": sm.params.experiment},
        f,
        indent=2,
    )
    f.write("\n")
