"""Trainer workers: learn models from the Redis observation streams, exactly once."""
