"""Memory as the runtime watches it: the device probe, looked at now and then, with a warning
logged when pressure rises or swap grows. The budget for a load is the planner's
(`planner.plan.plan_for`), fed with the look this watch takes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from agentport.planner.probes import DeviceMemory

log = logging.getLogger("agentport.memory")

SWAP_GROWTH_WARNING = 64 << 20  # bytes of new swap between two looks that deserve a warning

Probe = Callable[[], DeviceMemory]


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
