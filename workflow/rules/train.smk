# One job per env x method (x swept value) x seed: `trpo-bench train` writes the run folder
# (progress.csv, summary.json, policy.pt, checkpoint.pt) and logs one MLflow run. Resources come
# from the grid's `resources` entry of the env's family (or of the env itself), so a SLURM
# submission asks for what the job needs. A rerun of a failed job resumes from checkpoint.pt
# (Snakemake removes only the declared outputs).


rule train:
    input:
        MLFLOW_STORE,
    output:
        summary=f"{RUN_DIR}/summary.json",
        progress=f"{RUN_DIR}/progress.csv",
    log:
        f"{RESULTS}/logs/train/{{env}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{env}}/{{variant}}/seed{{seed}}.tsv"
    threads: lambda wildcards: train_resources(wildcards)["threads"]
    resources:
        mem_mb=lambda wildcards: train_resources(wildcards)["mem_mb"],
        runtime=lambda wildcards: train_resources(wildcards)["runtime"],
    params:
        command=lambda wildcards, output, threads: train_command(wildcards, output, threads),
    shell:
        # One torch thread per declared core; numpy's BLAS likewise.
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} "
        "{params.command} > {log} 2>&1"
