"""Glue for rule mlflow_store: create the MLflow store and the grid's experiment once.

A store that cannot be opened (a tracking server down or not answering, a held lock file) does
not stop the grid: the rule writes ``"experiment_id": null`` with the reason under ``warning``,
prints one WARNING line, and the training jobs run (each reports its own MLflow failure in one
line and writes its result files). Every MLflow call here is bounded (mlflow_log.HTTP_DEFAULTS).
"""

import json
import sys

from trpo_bench.run.mlflow_log import (
    bound_tracking_calls,
    experiment_description,
    get_or_create_experiment,
    is_local_store,
    set_experiment_description,
    short_reason,
    store_lock,
)

sm = snakemake  # noqa: F821 (injected by Snakemake)
console = sys.stderr
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115 (warnings go to the rule's log)

uri, experiment = sm.params.uri, sm.params.experiment
info = {"tracking_uri": uri, "experiment": experiment}
bound_tracking_calls()
try:
    from mlflow.tracking import MlflowClient

    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        attempts = 8 if is_local_store(uri) else 1
        info["experiment_id"] = get_or_create_experiment(client, experiment, uri, attempts)
        # Shown above the runs table: the key metrics (the summary run's link comes later).
        set_experiment_description(
            client, info["experiment_id"], experiment_description(info["experiment_id"])
        )
except Exception as e:
    info["experiment_id"] = None
    info["warning"] = (
        f"MLFLOW STORE UNREACHABLE: could not open {uri}: {short_reason(e)}. The training jobs "
        "run anyway and write their result files; MLflow gets what they can log. To fix: check "
        "the server, or the grid's mlflow_uri / MLFLOW_TRACKING_URI, then delete "
        f"{sm.output[0]} and rerun the workflow."
    )
    for stream in (console, sys.stderr):
        print(f"WARNING: {info['warning']}", file=stream, flush=True)
with open(sm.output[0], "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
