"""llm-d's latency predictor API, served by Latency Oracle (see ``routes.py``)."""
