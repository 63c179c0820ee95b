"""How much of the machine other processes took while a round ran: a benchmark on a shared
machine flags the rounds that measured the neighbours rather than the target.

The share is the machine's busy CPU time over the round, less the target server's and this
client's own, over wall time x CPUs (psutil, so it works wherever psutil does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CONTENTION_SHARE = 0.10  # above this, a round's numbers are flagged as unreliable


@dataclass(frozen=True)
class CpuSample:
    pid: int | None
    wall: float
    machine: float  # busy CPU seconds of all CPUs
    server: float | None  # CPU seconds of the target's process, if we know it
    client: float  # CPU seconds of this process


def sample(pid: int | None) -> CpuSample:
    import psutil

    times = psutil.cpu_times()
    busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    now = time.perf_counter()
    return CpuSample(pid, now, busy, _process_seconds(pid), time.process_time())


def _process_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system + t.children_user + t.children_system


def server_seconds(before: CpuSample, after: CpuSample) -> float | None:
    """CPU seconds the target's process used between two samples."""
    if before.server is None or after.server is None:
        return None
    return after.server - before.server


def foreign_share(before: CpuSample, after: CpuSample) -> float | None:
    """Other processes' share of the machine's CPU capacity between two samples."""
    import psutil

    wall = after.wall - before.wall
    if before.server is None or after.server is None or wall <= 0:
        return None
    foreign = after.machine - before.machine
    foreign -= (after.server - before.server) + (after.client - before.client)
    return max(0.0, foreign) / (wall * (psutil.cpu_count() or 1))
