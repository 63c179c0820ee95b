"""The one memory-planning entry: settings, a model's shape, the device and the models already
loaded go in, the plan a load would make comes out.

The runtime (before every load), `agentport doctor` and `agentport fit` all plan through
`plan_for`, so they agree by construction. A question about other settings (another context,
another number of slots) is asked with a changed Settings (`settings.model_copy(update=...)`).

Memory-mapped weights count as "available" to the kernel (they are page cache), so the weights
of loaded models come off the budget here; their KV caches and compute buffers are already used
memory, and `model_budget` keeps them out of the reserve.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agentport.config import Settings
from agentport.planner.budget import default_reserve, model_budget
from agentport.planner.estimate import MemoryEstimate, estimate_memory
from agentport.planner.gguf_meta import ModelShape
from agentport.planner.guard import AGENT_FLOOR, LoadPlan, LoadRequest, plan_load
from agentport.planner.probes import DeviceMemory


@dataclass(slots=True, frozen=True)
class Resident:
    """What one loaded model holds, for the budget."""

    name: str
    weights: int
    total: int
    busy: bool = False
    last_used: float = 0.0  # any clock: only the order matters


def plan_for(
    settings: Settings,
    shape: ModelShape,
    device: DeviceMemory,
    residents: Iterable[Resident] = (),
) -> LoadPlan:
    """The plan to load `shape` under `settings` on `device` next to `residents` (the models
    already loaded, not counting this one). Raises guard.DoesNotFit when nothing fits."""
    residents = list(residents)
    budget = load_budget(settings, device, residents)
    return plan_load(shape, load_request(settings), budget, idle_by_age(residents))


def load_request(settings: Settings) -> LoadRequest:
    """What the settings ask of a load; "auto" and 0 leave the choice to the guard."""
    return LoadRequest(
        n_ctx=settings.context_length,
        parallel=settings.parallel or None,
        kv_type=None if settings.kv_type == "auto" else settings.kv_type,
        batch_size=settings.batch_size,
        flash_attention=settings.flash_attention,
        floor=min(AGENT_FLOOR, settings.context_length),
    )


def reserve_for(settings: Settings, device: DeviceMemory) -> int:
    """The bytes kept for the rest of the machine: the configured reserve, or the default."""
    return settings.memory_reserve or default_reserve(device.total)


def load_budget(settings: Settings, device: DeviceMemory, residents: Iterable[Resident]) -> int:
    """What the next load may use before any eviction: `model_budget`, less everything loaded
    models hold (their KV caches and buffers as its `loaded`, their page-cache weights here)."""
    residents = list(residents)
    held_outside_cache = sum(max(0, r.total - r.weights) for r in residents)
    budget = model_budget(device, reserve_for(settings, device), loaded=held_outside_cache)
    return max(0, budget - sum(r.weights for r in residents))


def idle_by_age(residents: Iterable[Resident]) -> list[tuple[str, int]]:
    """(name, bytes) of loaded models not in use, least recently used first."""
    idle = sorted((r for r in residents if not r.busy), key=lambda r: r.last_used)
    return [(r.name, r.total) for r in idle]


def estimate_as_asked(shape: ModelShape, request: LoadRequest, n_ctx: int) -> MemoryEstimate:
    """The bytes of `request`'s own configuration at `n_ctx` tokens, before the guard adapts
    anything (one slot and an f16 cache where the request leaves them to the guard)."""
    return estimate_memory(
        shape,
        n_ctx,
        parallel=request.parallel or 1,
        kv_type=request.kv_type or "f16",
        batch_size=request.batch_size,
        flash_attention=request.flash_attention,
    )
