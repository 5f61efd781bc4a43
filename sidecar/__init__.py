"""The sidecar in every engine pod: scrapes engine load, measures requests, reports both.

Public names are exported here (``from latency_oracle.sidecar import InflightCounter``)
and imported on first use: the simulator counts in flight with the sidecar's counter
without loading its HTTP stack, and nothing here loads the learners.
"""

from latency_oracle.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "app": ("create_sidecar", "serve_sidecar", "SidecarApp"),
        "exchange": ("FirstTokenRecords",),
        "inflight": ("InflightCounter",),
        "sink": ("ObservationSink", "RedisSink", "PredictorSink"),
    },
)
