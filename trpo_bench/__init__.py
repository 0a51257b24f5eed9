"""trpo-bench: the comparison of Schulman et al. 2015 (TRPO), reproducible at any scale."""

__version__ = "0.1.0"
