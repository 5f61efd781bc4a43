"""The process helpers the demo, tests and benchmarks share."""

from __future__ import annotations

from latency_oracle.sim.processes import free_port


def test_free_port_never_hands_out_one_port_twice() -> None:
    """Two servers picked before either binds (an engine and its sidecar) get two ports,
    even though the kernel may reuse a just-closed ephemeral port."""
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
