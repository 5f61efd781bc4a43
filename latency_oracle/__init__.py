"""Latency Oracle: CLI and settings shared by every component."""
