"""Model state at rest: the restricted codec, signed snapshots, Redis checkpoints and pins."""
