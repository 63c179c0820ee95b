"""Memory as the runtime sees it: the budget for the next load, and a watch on the machine.

The planner does the arithmetic (planner/); this module feeds it what the runtime knows: the
device probe, the configured reserve, and the models already loaded. Memory-mapped weights count
as "available" to the kernel (they are page cache), so the weights of loaded models are taken
out of the budget here; their KV cache is already counted as used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agentport.planner.budget import model_budget
from agentport.planner.probes import DeviceMemory

log = logging.getLogger("agentport.memory")

SWAP_GROWTH_WARNING = 64 << 20  # bytes of new swap between two looks that deserve a warning

Probe = Callable[[], DeviceMemory]


@dataclass(slots=True)
class Resident:
    """What one loaded model holds, for the budget."""

    name: str
    weights: int
    total: int
    busy: bool
    last_used: float


def load_budget(device: DeviceMemory, reserve: int, loaded: Iterable[Resident]) -> int:
    """What the next load may use: the planner's budget, less everything loaded models hold
    (their KV caches and buffers through `loaded`, their page-cache weights here)."""
    residents = list(loaded)
    held_outside_cache = sum(r.total - r.weights for r in residents)
    budget = model_budget(device, reserve or None, loaded=held_outside_cache)
    return max(0, budget - sum(r.weights for r in residents))


def idle_by_age(loaded: Iterable[Resident]) -> list[tuple[str, int]]:
    """(name, bytes) of loaded models not in use, least recently used first."""
    idle = sorted((r for r in loaded if not r.busy), key=lambda r: r.last_used)
    return [(r.name, r.total) for r in idle]


class MemoryWatch:
    """Looks at the machine now and then; logs rising pressure and swap growth."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.last: DeviceMemory | None = None
        self.warning: str | None = None

    def look(self) -> DeviceMemory:
        device = self.probe()
        previous, self.last = self.last, device
        problems = []
        if device.pressure != "ok":
            detail = f" ({device.pressure_detail})" if device.pressure_detail else ""
            problems.append(f"memory pressure {device.pressure}{detail}")
        if previous is not None and device.swap_used - previous.swap_used > SWAP_GROWTH_WARNING:
            grown = (device.swap_used - previous.swap_used) >> 20
            problems.append(f"swap grew by {grown} MiB to {device.swap_used >> 20} MiB")
        warning = "; ".join(problems) or None
        if warning and warning != self.warning:
            log.warning("%s: consider unloading a model or a smaller context", warning)
        elif self.warning and not warning:
            log.info("memory pressure back to normal")
        self.warning = warning
        return device

    def status(self) -> dict:
        device = self.last
        if device is None:
            return {}
        return {
            "total": device.total,
            "available": device.available,
            "swap_used": device.swap_used,
            "pressure": device.pressure,
            "pressure_detail": device.pressure_detail,
            "warning": self.warning,
        }
