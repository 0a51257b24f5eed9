"""Glue for rule mlflow_store: create the MLflow store and the grid's experiment once."""

import json
import sys

from mlflow.tracking import MlflowClient

from trpo_bench.tracking import get_or_create_experiment

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

client = MlflowClient(tracking_uri=sm.params.uri)
experiment_id = get_or_create_experiment(client, sm.params.experiment, sm.params.uri)
with open(sm.output[0], "w") as f:
    info = {"tracking_uri": sm.params.uri, "experiment": sm.params.experiment}
    json.dump({**info, "experiment_id": experiment_id}, f, indent=2)
    f.write("\n")
