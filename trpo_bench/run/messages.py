"""One line for an exception, shared by the run folder's errors and MLflow's warnings."""

from __future__ import annotations


def short_reason(e: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, cut in the middle to ``limit`` characters (the end of
    MLflow's HTTP errors says what happened: refused, timed out)."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    half = (limit - 5) // 2
    return text if len(text) <= limit else f"{text[:half]} ... {text[-half:]}"
