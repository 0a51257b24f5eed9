# One job per env x method (x swept value) x seed: `trpo-bench train` writes the run folder
# (progress.csv, summary.json, policy.pt, checkpoint.pt) and logs one MLflow run. Resources come
# from the grid's `resources` entry of the env's family (or of the env itself), so a SLURM
# submission asks for what the job needs; its time limit is at most the grid's max_job_minutes
# (a partition's limit).
#
# A run longer than its job's time limit: inside a SLURM job trpo-bench reads the time left,
# stops before it with the last iteration checkpointed (exit 75), and `retries` (sized from the
# grid's estimate, trpo_bench/analysis/estimate.py) submits the next job, which resumes from
# checkpoint.pt. Snakemake deletes only the declared outputs of a failed attempt; checkpoint.pt
# stays, so no attempt loses completed iterations, and a run that finished just before its
# limit is rewritten from its final checkpoint without training (README, On a SLURM cluster).

from trpo_bench.analysis.estimate import job_limit_minutes, job_priorities, train_retries

# Planned by the main process only (a cluster job re-reads this file and never retries itself).
TRAIN_RETRIES = train_retries(config, TO_TRAIN) if workflow.is_main_process else 0
# The longest jobs first (their estimated wall seconds): the grid's wall time is bounded by them.
PRIORITIES = job_priorities(config, TO_TRAIN) if workflow.is_main_process else {}


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
    retries: TRAIN_RETRIES
    priority: lambda wildcards: PRIORITIES.get(run_of(wildcards), 0)
    threads: lambda wildcards: train_resources(wildcards)["threads"]
    resources:
        mem_mb=lambda wildcards: train_resources(wildcards)["mem_mb"],
        runtime=lambda wildcards: job_limit_minutes(config, run_of(wildcards).env),
        # GPUs (0 unless the grid's resources entry asks): the SLURM plugin passes them on
        gpu=lambda wildcards: train_resources(wildcards)["gpu"],
    params:
        command=lambda wildcards, output, threads: train_command(wildcards, output, threads),
    shell:
        # The job's declared cores step its envs (env_workers, set by train_command; no number
        # changes with them); torch keeps its own torch_threads (1 unless the grid sets it), and
        # numpy's BLAS one thread, so that the workers have the cores. (Snakemake deletes the
        # log before each attempt: it holds the last job's, which says where that job resumed.)
        # Every path and value is quoted: the command by shlex.join (train_command), the log
        # by :q, so a results folder or a name with shell characters runs nothing.
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "
        "{params.command} > {log:q} 2>&1"


# A run committed under the grid's committed_runs folder (trpo_bench.committed) is adopted: its
# compact files are written into the run folder instead of training it. Only where it is the
# same run (identity, iterations, completed) and the results folder has not started it itself;
# otherwise the input is missing and rule train makes the files.
ruleorder: adopt > train


rule adopt:
    input:
        unpack(committed_inputs),
    output:
        summary=f"{RUN_DIR}/summary.json",
        progress=f"{RUN_DIR}/progress.csv",
    log:
        f"{RESULTS}/logs/adopt/{{env}}/{{variant}}/seed{{seed}}.log",
    localrule: True
    script:
        "../scripts/adopt.py"
