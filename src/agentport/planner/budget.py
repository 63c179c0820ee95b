"""How many bytes models may take: the reserve kept for the rest of the machine, and the budget.

The reserve is what the IDE, the browser and the OS are entitled to, open or not yet open. The
budget is what the next load may allocate, the smallest of:

- `total - reserve - loaded`: models together never eat into the reserve (`loaded` is what
  models already hold outside `available`'s view, see `model_budget`);
- `available - headroom`: memory free right now, minus a little slack, so nothing is ever loaded
  into swap even when other programs already use more than the reserve;
- on Apple silicon, Metal's working-set limit less what is loaded: everything the GPU touches
  (weights, KV cache, compute buffers) must fit in it;
- with a CUDA GPU, its free memory less a little slack: models are offloaded to it whole.

Under critical memory pressure the budget is 0: nothing new is loaded until it eases (idle models
can still be evicted to make room).
"""

from __future__ import annotations

from agentport.planner.probes import DeviceMemory

GIB = 1 << 30
MIB = 1 << 20
RESERVE_BASE = 4 * GIB  # the OS and a desktop session
RESERVE_SHARE = 8  # plus 1/8 of the memory: IDEs and browsers grow with the machine
RESERVE_MAX = 16 * GIB
HEADROOM_MIN = 256 * MIB
HEADROOM_SHARE = 50  # 2% of the memory stays free beyond the budget
GPU_HEADROOM = 512 * MIB  # the CUDA context and allocator slack


def default_reserve(total: int) -> int:
    """Bytes kept for an IDE, a browser and the OS: 4 GiB plus 1/8 of the memory, at most half
    of it and at most 16 GiB (16 GiB machine: 6 GiB; 24: 7; 48: 10; 8: 4)."""
    return max(0, min(total // 2, RESERVE_BASE + total // RESERVE_SHARE, RESERVE_MAX))


def headroom(total: int) -> int:
    return max(HEADROOM_MIN, total // HEADROOM_SHARE)


def model_budget(device: DeviceMemory, reserve: int | None = None, loaded: int = 0) -> int:
    """Bytes the next model load may use (the rule is in the module docstring).

    `reserve`: None for `default_reserve(device.total)`. `loaded`: bytes that models already
    loaded hold and that `available` does not show as free but `total` still contains: their
    KV caches and compute buffers (their mmapped weights are page cache, which Linux counts as
    available; the caller subtracts those itself)."""
    if device.pressure == "critical":
        return 0
    if reserve is None:
        reserve = default_reserve(device.total)
    limits = [
        device.total - reserve - loaded,
        device.available - headroom(device.total),
    ]
    if device.metal_limit is not None:
        limits.append(device.metal_limit - loaded)
    if device.gpu_free is not None:
        limits.append(device.gpu_free - GPU_HEADROOM)
    return max(0, min(limits))
