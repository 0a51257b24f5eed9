"""From run folders to answers: tables, claims, plots, reports, status, estimates."""
