"""What the machine has: RAM (or unified memory), swap, memory pressure, GPU memory.

`probe_device` reads Linux's /proc/meminfo and PSI (/proc/pressure/memory), a cgroup's memory
limit when the process runs in one, macOS's sysctls (hw.memsize, iogpu.wired_limit_mb,
kern.memorystatus_vm_pressure_level) with psutil for available memory and swap, and, when the
`nvidia-smi` binary exists, CUDA's total and free memory. Every source is a callable in
`Probes`, so tests feed recorded values. Probing never raises: a source that fails is skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10
PSI_WARN_SOME = 10.0  # % of the last 10 s some task waited for memory
PSI_CRITICAL_FULL = 10.0  # % of the last 10 s every task waited for memory
MACOS_PRESSURE = {1: "ok", 2: "warn", 4: "critical"}  # kern.memorystatus_vm_pressure_level
METAL_SMALL_MACHINE = 32 * GIB  # up to here Metal's working set is about 2/3 of RAM, then 3/4
NVIDIA_SMI_QUERY = (
    "nvidia-smi",
    "--query-gpu=memory.total,memory.free",
    "--format=csv,noheader,nounits",
)
SUBPROCESS_TIMEOUT = 2.0
CGROUP_V2 = "/sys/fs/cgroup/"
CGROUP_V1 = "/sys/fs/cgroup/memory/"


@dataclass(slots=True)
class DeviceMemory:
    total: int  # bytes of RAM (or unified memory)
    available: int
    swap_total: int = 0
    swap_used: int = 0
    pressure: str = "ok"  # "ok" | "warn" | "critical"
    pressure_detail: str = ""  # e.g. "PSI some avg10=3.20" or "vm_pressure_level=2"
    gpu_total: int | None = None  # CUDA, when present (all GPUs together)
    gpu_free: int | None = None
    metal_limit: int | None = None  # macOS recommendedMaxWorkingSetSize
    platform: str = "linux"  # "linux" | "darwin" | ...


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _sysctl(name: str) -> str | None:
    return _run(("sysctl", "-n", name))


def _nvidia_smi() -> str | None:
    """The query's output, or None when there is no nvidia-smi (never an error)."""
    if shutil.which(NVIDIA_SMI_QUERY[0]) is None:
        return None
    return _run(NVIDIA_SMI_QUERY)


def _virtual_memory() -> tuple[int, int]:
    import psutil

    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def _swap_memory() -> tuple[int, int]:
    import psutil

    swap = psutil.swap_memory()
    return int(swap.total), int(swap.used)


def _run(command: tuple[str, ...]) -> str | None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(slots=True)
class Probes:
    """The sources `probe_device` reads; replace any of them to test with recorded values."""

    platform: str = field(default_factory=lambda: sys.platform)
    read_text: Callable[[str], str | None] = _read_text
    sysctl: Callable[[str], str | None] = _sysctl
    nvidia_smi: Callable[[], str | None] = _nvidia_smi
    virtual_memory: Callable[[], tuple[int, int]] = _virtual_memory  # (total, available)
    swap_memory: Callable[[], tuple[int, int]] = _swap_memory  # (total, used)


def probe_device(probes: Probes | None = None) -> DeviceMemory:
    """The machine's memory now. Never raises; unknown values are left at their defaults."""
    probes = probes or Probes()
    platform = "linux" if probes.platform.startswith("linux") else probes.platform
    reader = {"linux": _linux, "darwin": _darwin}.get(platform, _generic)
    try:
        device = reader(probes)
    except Exception:  # a probe must never take the server down
        device = _fallback(probes)
    device.platform = platform
    _add_cuda(device, probes)
    return device


def _fallback(probes: Probes) -> DeviceMemory:
    try:
        return _generic(probes)
    except Exception:
        return DeviceMemory(total=0, available=0)


def _generic(probes: Probes) -> DeviceMemory:
    total, available = probes.virtual_memory()
    device = DeviceMemory(total=total, available=available)
    _add_swap(device, probes)
    return device


def _add_swap(device: DeviceMemory, probes: Probes) -> None:
    with contextlib.suppress(Exception):
        device.swap_total, device.swap_used = probes.swap_memory()


# Linux


def _linux(probes: Probes) -> DeviceMemory:
    info = parse_meminfo(probes.read_text("/proc/meminfo") or "")
    if "MemTotal" not in info:
        device = _generic(probes)
    else:
        total = info["MemTotal"]
        device = DeviceMemory(
            total=total,
            available=info.get("MemAvailable", info.get("MemFree", 0)),
            swap_total=info.get("SwapTotal", 0),
            swap_used=max(0, info.get("SwapTotal", 0) - info.get("SwapFree", 0)),
        )
    _apply_cgroup(device, probes)
    _apply_psi(device, probes.read_text("/proc/pressure/memory"))
    return device


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per key."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = KIB if len(parts) > 1 and parts[1] == "kB" else 1
            values[key.strip()] = int(parts[0]) * scale
    return values


def _apply_cgroup(device: DeviceMemory, probes: Probes) -> None:
    """Inside a container the cgroup's limit, not the host's RAM, is what there is."""
    for folder, limit_name, usage_name, inactive_key in (
        (CGROUP_V2, "memory.max", "memory.current", "inactive_file"),
        (CGROUP_V1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        limit = _integer(probes.read_text(folder + limit_name))
        if limit is None:
            continue
        if limit >= device.total:
            return
        usage = _integer(probes.read_text(folder + usage_name)) or 0
        stat = _stat_lines(probes.read_text(folder + "memory.stat") or "")
        free_in_group = max(0, limit - usage + stat.get(inactive_key, 0))
        device.total = limit
        device.available = min(device.available, free_in_group)
        return


def _integer(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _stat_lines(text: str) -> dict[str, int]:
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


def _apply_psi(device: DeviceMemory, text: str | None) -> None:
    psi = parse_psi(text or "")
    if not psi:
        return
    some, full = psi.get("some", 0.0), psi.get("full", 0.0)
    device.pressure_detail = f"PSI some avg10={some:.2f} full avg10={full:.2f}"
    if full >= PSI_CRITICAL_FULL:
        device.pressure = "critical"
    elif some >= PSI_WARN_SOME:
        device.pressure = "warn"


def parse_psi(text: str) -> dict[str, float]:
    """avg10 of each line of /proc/pressure/memory: {"some": 3.2, "full": 0.0}."""
    values = {}
    for line in text.splitlines():
        kind, *fields_ = line.split()
        for item in fields_:
            name, _, number = item.partition("=")
            if name == "avg10":
                with contextlib.suppress(ValueError):
                    values[kind] = float(number)
    return values


# macOS


def _darwin(probes: Probes) -> DeviceMemory:
    total, available = probes.virtual_memory()
    memsize = _integer(probes.sysctl("hw.memsize"))
    device = DeviceMemory(total=memsize or total, available=available, platform="darwin")
    _add_swap(device, probes)
    if (probes.sysctl("hw.optional.arm64") or "").strip() == "1":
        wired_mb = _integer(probes.sysctl("iogpu.wired_limit_mb")) or 0
        device.metal_limit = metal_working_set(device.total, wired_mb)
    level = _integer(probes.sysctl("kern.memorystatus_vm_pressure_level"))
    if level is not None:
        device.pressure = MACOS_PRESSURE.get(level, "warn")
        device.pressure_detail = f"vm_pressure_level={level}"
    return device


def metal_working_set(total: int, wired_limit_mb: int = 0) -> int:
    """Metal's recommendedMaxWorkingSetSize: about 2/3 of RAM up to 32 GB and 3/4 above, or
    what `sysctl iogpu.wired_limit_mb` sets it to."""
    if wired_limit_mb > 0:
        return wired_limit_mb * MIB
    if total <= METAL_SMALL_MACHINE:
        return total * 2 // 3
    return total * 3 // 4


# CUDA


def _add_cuda(device: DeviceMemory, probes: Probes) -> None:
    try:
        parsed = parse_nvidia_smi(probes.nvidia_smi() or "")
    except Exception:
        parsed = None
    if parsed is not None:
        device.gpu_total, device.gpu_free = parsed


def parse_nvidia_smi(text: str) -> tuple[int, int] | None:
    """(total, free) bytes over all GPUs from `memory.total,memory.free` lines in MiB."""
    total = free = 0
    seen = False
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            total += int(parts[0]) * MIB
            free += int(parts[1]) * MIB
            seen = True
    return (total, free) if seen else None
