"""The run folder's files (``trpo-bench train --out``). Light (no torch): the recorder that
writes them (``trpo_bench.run.recorder``) and ``trpo-bench status`` that reads them while a
grid runs (``trpo_bench.analysis.status``) share these names."""

PROGRESS_FILE = "progress.csv"  # one row per iteration
SUMMARY_FILE = "summary.json"  # the run's status and final figures
POLICY_FILE = "policy.pt"  # the final policy (trpo_bench.run.learner.load_policy)
CHECKPOINT_FILE = "checkpoint.pt"  # what a resume needs
LOCK_FILE = ".trpo-bench.lock"  # held by the process writing the folder: "pid N on host H"
MLFLOW_ARTIFACTS = "mlartifacts"  # a local MLflow store's artifacts, beside its mlflow.db
