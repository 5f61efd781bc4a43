"""The Redis side of the feature store: the client, key layout, observation streams, pod states."""
