"""Simulated workloads and engines for tests, benchmarks and demos."""
