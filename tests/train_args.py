"""The command line of a tiny ``trpo-bench train`` run, shared by the tests that drive the CLI."""

from pathlib import Path


def train_args(
    out: Path, *extra: str, iterations: int = 2, sets: tuple[str, ...] = ()
) -> list[str]:
    """``train`` on CartPole-v1 into ``out``: ``iterations`` of 200 steps, no MLflow, quiet;
    each of ``sets`` as ``--set KEY=VALUE``, then ``extra``."""
    settings = [arg for s in ("mlflow=false", *sets) for arg in ("--set", s)]
    return ["train", "--env", "CartPole-v1", "--out", str(out), "--iterations", str(iterations),
            "--steps-per-iter", "200", *settings, "--quiet", *extra]  # fmt: skip
