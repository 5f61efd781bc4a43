"""Observation schema, feature engineering and the observation stores.

Public names are exported here (``from latency_oracle.features import build_features``)
and imported on first use: the sidecar reads the records without loading numpy.
"""

from latency_oracle.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "schema": (
            "Observation",
            "PredictionRequest",
            "PredictionQuery",
            "PromptSize",
            "RequestShape",
            "PodIdentity",
            "ServerState",
        ),
        "labels": ("Label", "Claimed", "offered"),
        "pod_state": ("PodState", "PodStateStore"),
        "engineering": ("FEATURE_NAMES", "RequestColumns", "build_features", "record_numbers"),
        "store": ("ObservationStore", "InProcessObservationStore", "StoreFull"),
        "redis.observation_store": ("RedisObservationStore",),
        "accelerators": ("normalize_accelerator",),
    },
)
