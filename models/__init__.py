"""Online quantile learners, calibration, evaluation and the per-accelerator registry."""
