"""SLO-aware routing: admit, place or shed a request against per-pod latency predictions.

Public names are exported here (``from latency_oracle.routing import Router``) and
imported on first use.
"""

from latency_oracle.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "router": ("Router", "RouteDecision", "NoCandidates"),
        "route_request": ("RouteRequest", "CandidatePod", "Slo"),
        "policies": (
            "RoutingPolicy",
            "PhaseView",
            "Choice",
            "LeastLatency",
            "Headroom",
            "SloAttainment",
            "LeastLoaded",
            "make_router_policy",
        ),
        "inflight_ledger": ("InFlightLedger",),
    },
)
