"""Checks of the pipeline that are not training runs (docs/reproduction/long.md cites them)."""
