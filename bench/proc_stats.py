"""Where a benchmark's CPU and connections went, read from Linux ``/proc``.

On a 2-core machine shared with other work, a throughput figure means little without
knowing how much CPU the server got, how much the load generator took, and how much other
processes took meanwhile; and with several uvicorn workers, which worker holds the
client's keep-alive connections. These readers answer that without any dependency.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
TCP_ESTABLISHED = "01"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent on anything but idling, since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def reaped_children_seconds() -> float:
    """CPU time of this process's finished and waited-for children (a load generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_pids(pid: int) -> list[int]:
    """uvicorn's spawned worker processes under ``pid``; ``[pid]`` when it serves itself."""
    workers = [
        child
        for child in _children(pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return sorted(workers) or [pid]


def connections_held(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections each process holds on local ``port``."""
    inodes = _established_inodes(port)
    counts = {}
    for pid in pids:
        held = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed since the listing
                continue
            if target.startswith("socket:["):
                held.add(target[8:-1])
        counts[pid] = len(held & inodes)
    return counts


@dataclass(frozen=True, slots=True)
class CpuShares:
    """Cores (CPU seconds per second) over one window: per server process, client, rest."""

    server: dict[int, float]
    client: float
    rest: float


class CpuWindow:
    """Opened before a measured run and read after it; the client must be reaped by then."""

    def __init__(self, server_pids: list[int]) -> None:
        self._server = {pid: cpu_seconds(pid) for pid in server_pids}
        self._client = reaped_children_seconds()
        self._machine = machine_busy_seconds()
        self._started = time.monotonic()

    def shares(self) -> CpuShares:
        elapsed_s = time.monotonic() - self._started
        server = {pid: (cpu_seconds(pid) - self._server[pid]) / elapsed_s for pid in self._server}
        client = (reaped_children_seconds() - self._client) / elapsed_s
        machine = (machine_busy_seconds() - self._machine) / elapsed_s
        return CpuShares(server, client, max(0.0, machine - sum(server.values()) - client))


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (``/proc/*/task/*/children`` is not always built in)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except OSError:  # exited since the listing
            continue
        if parent == pid:
            children.append(int(entry.name))
    return children


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces): state, ppid..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == TCP_ESTABLISHED:
                inodes.add(fields[9])
    return inodes
