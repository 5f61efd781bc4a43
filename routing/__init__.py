"""SLO-aware routing: admit, place or shed a request against per-pod latency predictions."""
