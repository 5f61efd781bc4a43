"""The cluster evaluation: routing policies on simulated engines, swept over load, reported."""
