"""The FastAPI prediction service."""
