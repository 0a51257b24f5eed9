"""The math core: pure functions and modules of the paper's equations (sec. 6, app. C)."""
