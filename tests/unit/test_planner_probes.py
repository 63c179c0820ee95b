"""Device probes with recorded values: Linux (/proc, PSI, cgroups), macOS (sysctl, Metal's
working set, vm pressure), CUDA (nvidia-smi), and the budget they give."""

from __future__ import annotations

import pytest

from agentport.planner.budget import default_reserve, headroom, model_budget
from agentport.planner.probes import (
    DeviceMemory,
    Probes,
    metal_working_set,
    parse_meminfo,
    parse_nvidia_smi,
    parse_psi,
    probe_device,
)

GIB = 1 << 30
MIB = 1 << 20


def meminfo(total_gib: float, available_gib: float, swap_gib=0.0, swap_free_gib=0.0) -> str:
    kib = 1 << 20
    return (
        f"MemTotal:       {int(total_gib * kib)} kB\n"
        f"MemFree:          123456 kB\n"
        f"MemAvailable:   {int(available_gib * kib)} kB\n"
        f"SwapTotal:      {int(swap_gib * kib)} kB\n"
        f"SwapFree:       {int(swap_free_gib * kib)} kB\n"
        "HugePages_Total:       0\n"
    )


def psi(some: float, full: float) -> str:
    return (
        f"some avg10={some:.2f} avg60=1.00 avg300=0.50 total=123\n"
        f"full avg10={full:.2f} avg60=0.00 avg300=0.00 total=45\n"
    )


def no_psutil():
    raise AssertionError("psutil must not be needed here")


def linux(files: dict[str, str], smi: str | None = None) -> Probes:
    return Probes(
        platform="linux",
        read_text=files.get,
        sysctl=lambda name: None,
        nvidia_smi=lambda: smi,
        virtual_memory=no_psutil,
        swap_memory=no_psutil,
    )


def mac(sysctls: dict[str, str], available: int, swap_used: int = 0) -> Probes:
    return Probes(
        platform="darwin",
        read_text=lambda path: None,
        sysctl=sysctls.get,
        nvidia_smi=lambda: None,
        virtual_memory=lambda: (int(sysctls["hw.memsize"]), available),
        swap_memory=lambda: (4 * GIB, swap_used),
    )


# --- Linux -----------------------------------------------------------------------------------


def test_linux_from_proc():
    device = probe_device(
        linux({"/proc/meminfo": meminfo(32, 20), "/proc/pressure/memory": psi(0.5, 0)})
    )
    assert (device.total, device.available) == (32 * GIB, 20 * GIB)
    assert (device.swap_used, device.pressure, device.platform) == (0, "ok", "linux")
    assert device.pressure_detail == "PSI some avg10=0.50 full avg10=0.00"
    assert device.gpu_total is None and device.metal_limit is None


def test_low_memory_linux_with_swap_in_use_and_high_psi():
    files = {
        "/proc/meminfo": meminfo(8, 2, swap_gib=4, swap_free_gib=2.5),
        "/proc/pressure/memory": psi(23.4, 1.2),
    }
    device = probe_device(linux(files))
    assert device.available == 2 * GIB
    assert device.swap_used == int(1.5 * GIB)
    assert device.pressure == "warn"
    assert "some avg10=23.40" in device.pressure_detail
    budget = model_budget(device)
    assert budget == 2 * GIB - headroom(8 * GIB)  # available binds, not total - reserve


def test_linux_thrashing_is_critical_and_gives_no_budget():
    files = {"/proc/meminfo": meminfo(8, 1), "/proc/pressure/memory": psi(80, 35)}
    device = probe_device(linux(files))
    assert device.pressure == "critical"
    assert model_budget(device) == 0


def test_linux_without_psi():
    device = probe_device(linux({"/proc/meminfo": meminfo(16, 12)}))
    assert device.pressure == "ok" and device.pressure_detail == ""


def test_cgroup_limit_is_the_machine():
    files = {
        "/proc/meminfo": meminfo(64, 60),
        "/sys/fs/cgroup/memory.max": f"{8 * GIB}\n",
        "/sys/fs/cgroup/memory.current": f"{5 * GIB}\n",
        "/sys/fs/cgroup/memory.stat": f"anon 123\ninactive_file {1 * GIB}\n",
    }
    device = probe_device(linux(files))
    assert (device.total, device.available) == (8 * GIB, 4 * GIB)


def test_unlimited_cgroup_is_ignored():
    files = {
        "/proc/meminfo": meminfo(16, 12),
        "/sys/fs/cgroup/memory.max": "max\n",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
    }
    device = probe_device(linux(files))
    assert (device.total, device.available) == (16 * GIB, 12 * GIB)


def test_parsers():
    assert parse_meminfo("MemTotal: 1024 kB\nBogus line\n") == {"MemTotal": 1 << 20}
    assert parse_psi(psi(3.2, 0.1)) == {"some": 3.2, "full": 0.1}
    assert parse_psi("garbage") == {}


# --- macOS -----------------------------------------------------------------------------------

MAC_MINI_16 = {
    "hw.memsize": str(16 * GIB),
    "hw.optional.arm64": "1",
    "iogpu.wired_limit_mb": "0",
    "kern.memorystatus_vm_pressure_level": "1",
}


def test_mac_mini_16gb():
    device = probe_device(mac(MAC_MINI_16, available=9 * GIB, swap_used=300 * MIB))
    assert device.platform == "darwin"
    assert device.total == 16 * GIB
    assert device.metal_limit == 16 * GIB * 2 // 3
    assert (device.swap_used, device.pressure) == (300 * MIB, "ok")
    assert model_budget(device) == 9 * GIB - headroom(16 * GIB)


@pytest.mark.parametrize("level,pressure", [("1", "ok"), ("2", "warn"), ("4", "critical")])
def test_mac_pressure_levels(level, pressure):
    sysctls = dict(MAC_MINI_16, **{"kern.memorystatus_vm_pressure_level": level})
    device = probe_device(mac(sysctls, available=4 * GIB))
    assert device.pressure == pressure
    assert device.pressure_detail == f"vm_pressure_level={level}"


def test_mac_wired_limit_raises_metal_working_set():
    sysctls = dict(MAC_MINI_16, **{"iogpu.wired_limit_mb": "14336"})
    device = probe_device(mac(sysctls, available=15 * GIB))
    assert device.metal_limit == 14 * GIB
    assert model_budget(device, reserve=1 * GIB) == 14 * GIB


def test_intel_mac_has_no_metal_limit():
    sysctls = dict(MAC_MINI_16, **{"hw.optional.arm64": "0"})
    assert probe_device(mac(sysctls, available=8 * GIB)).metal_limit is None


@pytest.mark.parametrize(
    "total_gib,wired_mb,limit",
    [
        (16, 0, 16 * GIB * 2 // 3),
        (32, 0, 32 * GIB * 2 // 3),
        (64, 0, 48 * GIB),
        (64, 57344, 56 * GIB),
    ],
)
def test_metal_working_set(total_gib, wired_mb, limit):
    assert metal_working_set(total_gib * GIB, wired_mb) == limit


def test_metal_limit_binds_the_budget():
    device = DeviceMemory(total=16 * GIB, available=15 * GIB, metal_limit=8 * GIB)
    assert model_budget(device, reserve=2 * GIB) == 8 * GIB
    assert model_budget(device, reserve=2 * GIB, loaded=1 * GIB) == 7 * GIB


# --- CUDA ------------------------------------------------------------------------------------


def test_cuda_from_nvidia_smi():
    device = probe_device(linux({"/proc/meminfo": meminfo(64, 60)}, smi="24564, 20000\n"))
    assert (device.gpu_total, device.gpu_free) == (24564 * MIB, 20000 * MIB)
    assert model_budget(device) == 20000 * MIB - 512 * MIB  # models are offloaded whole


def test_two_gpus_add_up_and_no_nvidia_smi_is_fine():
    assert parse_nvidia_smi("24576, 20000\n24576, 1000\n") == (48 * GIB, 21000 * MIB)
    assert parse_nvidia_smi("NVIDIA-SMI has failed\n") is None
    device = probe_device(linux({"/proc/meminfo": meminfo(16, 12)}, smi=None))
    assert device.gpu_total is None


# --- never raises ----------------------------------------------------------------------------


def test_probing_never_raises():
    def broken(*args):
        raise OSError("nope")

    probes = Probes(
        platform="linux",
        read_text=broken,
        sysctl=broken,
        nvidia_smi=broken,
        virtual_memory=lambda: (4 * GIB, 3 * GIB),
        swap_memory=broken,
    )
    device = probe_device(probes)
    assert (device.total, device.available) == (4 * GIB, 3 * GIB)
    probes.virtual_memory = broken
    assert probe_device(probes).total == 0


def test_real_probe_of_this_machine():
    device = probe_device()
    assert device.total > 0 and 0 <= device.available <= device.total
    assert device.pressure in ("ok", "warn", "critical")


# --- reserve and budget ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "total_gib,reserve_gib", [(2, 1), (8, 4), (16, 6), (24, 7), (48, 10), (96, 16), (512, 16)]
)
def test_default_reserve(total_gib, reserve_gib):
    assert default_reserve(total_gib * GIB) == reserve_gib * GIB


def test_budget_keeps_the_reserve_when_memory_is_free():
    device = DeviceMemory(total=16 * GIB, available=15 * GIB)
    assert model_budget(device) == 10 * GIB
    assert model_budget(device, reserve=0) == 15 * GIB - headroom(16 * GIB)
    assert model_budget(device, loaded=3 * GIB) == 7 * GIB


def test_budget_is_never_negative():
    assert model_budget(DeviceMemory(total=4 * GIB, available=100 * MIB)) == 0
