"""Running one job: the training loop, the run folder, MLflow, checkpoints, time limits."""
