"""Sampling (sec. 5): single path and vine."""
