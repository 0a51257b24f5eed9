# MLflow: the store and the experiment are created once, before the training jobs (many jobs
# opening a fresh sqlite store at once race on its schema); after the tables and plots, a
# summary run holds them (and the report's overview page) as artifacts and each env x method's
# returns as metrics, and the experiment's description names the key metrics and links it.


localrules:
    mlflow_store,


rule mlflow_store:
    output:
        MLFLOW_STORE,
    log:
        f"{RESULTS}/logs/mlflow_store.log",
    benchmark:
        f"{RESULTS}/benchmarks/mlflow_store.tsv"
    params:
        uri=MLFLOW_URI,
        experiment=config["experiment"],
    script:
        "../scripts/mlflow_store.py"


rule mlflow_summary:
    input:
        store=MLFLOW_STORE,
        tables=list(TABLES.values()),
        plots=PLOTS,
        claims=[*list(CLAIMS.values())[:-1], f"{CLAIMS['profile']}.png"],
        report=[OVERVIEW, COMPARISON_HTML, CLAIMS_HTML],
    output:
        MLFLOW_SUMMARY,
    log:
        f"{RESULTS}/logs/mlflow_summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/mlflow_summary.tsv"
    params:
        uri=MLFLOW_URI,
        experiment=config["experiment"],
        grid={k: config[k] for k in ("envs", "methods", "seeds", "preset", "sweeps")},
        train_jobs=len(RUNS),
    script:
        "../scripts/mlflow_summary.py"
