"""The one memory-planning entry, `plan_for`: what the settings ask, the budget next to loaded
models (their page-cache weights and their own buffers), which idle models go first, and a
question about other settings asked with a changed Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentport.config import Settings
from agentport.planner.budget import default_reserve, headroom
from agentport.planner.estimate import estimate_memory
from agentport.planner.gguf_meta import ModelShape, read_shape
from agentport.planner.guard import AGENT_FLOOR, DoesNotFit, LoadRequest
from agentport.planner.plan import (
    Resident,
    estimate_as_asked,
    idle_by_age,
    load_budget,
    load_request,
    plan_for,
    reserve_for,
)
from agentport.planner.probes import DeviceMemory

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def smollm2(gguf: Path) -> ModelShape:
    """The embedded model's shape, read from its GGUF."""
    return read_shape(gguf)


def machine(total: int = 16 * GIB, available: int = 12 * GIB) -> DeviceMemory:
    return DeviceMemory(total=total, available=available)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, LoadRequest(32768, None, None, 512, True, AGENT_FLOOR)),
        ({"context_length": 4096}, LoadRequest(4096, None, None, 512, True, 4096)),
        ({"parallel": 2, "kv_type": "q8_0"}, LoadRequest(32768, 2, "q8_0", 512, True, 32768)),
        (
            {"batch_size": 256, "flash_attention": False, "context_length": 65536},
            LoadRequest(65536, None, None, 256, False, AGENT_FLOOR),
        ),
    ],
)
def test_load_request_from_the_settings(changes: dict, expected: LoadRequest) -> None:
    assert load_request(Settings(**changes)) == expected


def test_reserve_configured_or_default() -> None:
    assert reserve_for(Settings(), machine()) == default_reserve(16 * GIB) == 6 * GIB
    assert reserve_for(Settings(memory_reserve=2 * GIB), machine()) == 2 * GIB


def test_the_budget_takes_off_what_loaded_models_hold() -> None:
    residents = [Resident("a", weights=1 * GIB, total=3 * GIB), Resident("b", 2 * GIB, 2 * GIB)]
    settings = Settings(memory_reserve=4 * GIB)
    # total 16 - reserve 4 - the KV caches and buffers (2) = 10, under available 12 - headroom;
    # then the page-cache weights (1 + 2) come off
    assert load_budget(settings, machine(), residents) == 10 * GIB - 3 * GIB
    # with nothing loaded, available binds
    assert load_budget(settings, machine(available=8 * GIB), []) == 8 * GIB - headroom(16 * GIB)
    assert load_budget(settings, machine(available=0), residents) == 0


def test_idle_models_oldest_first_busy_ones_never() -> None:
    residents = [
        Resident("new", 1, 10, last_used=3.0),
        Resident("busy", 1, 20, busy=True, last_used=1.0),
        Resident("old", 1, 30, last_used=2.0),
    ]
    assert idle_by_age(residents) == [("old", 30), ("new", 10)]


def test_plan_for_plans_the_settings_within_the_budget(smollm2: ModelShape) -> None:
    plan = plan_for(Settings(), smollm2, machine())
    assert (plan.n_ctx, plan.parallel, plan.kv_type, plan.evict) == (32768, 4, "f16", [])
    assert plan.estimate == estimate_memory(smollm2, 32768, parallel=4)
    assert plan.budget == load_budget(Settings(), machine(), [])


def test_plan_for_evicts_the_oldest_idle_model_first(smollm2: ModelShape) -> None:
    full = estimate_memory(smollm2, 32768, parallel=4).total
    # room for the plan only once one idle model of 2 GiB is gone
    device = machine(total=64 * GIB, available=full - 1 * GIB + headroom(64 * GIB))
    residents = [
        Resident("recent", 0, 2 * GIB, last_used=2.0),
        Resident("oldest", 0, 2 * GIB, last_used=1.0),
        Resident("busy", 0, 8 * GIB, busy=True, last_used=0.0),
    ]
    plan = plan_for(Settings(memory_reserve=1 * GIB), smollm2, device, residents)
    assert plan.parallel == 4 and plan.evict == ["oldest"]


def test_other_settings_are_asked_with_a_changed_settings(smollm2: ModelShape) -> None:
    settings = Settings()
    asked = settings.model_copy(update={"context_length": 8192, "parallel": 1, "kv_type": "q8_0"})
    plan = plan_for(asked, smollm2, machine())
    assert (plan.n_ctx, plan.parallel, plan.kv_type, plan.notes) == (8192, 1, "q8_0", [])
    assert settings.context_length == 32768  # the original is untouched


def test_plan_for_adapts_then_refuses(smollm2: ModelShape) -> None:
    small = machine(available=400 * MIB + headroom(16 * GIB))
    plan = plan_for(Settings(), smollm2, small)
    assert plan.parallel == 1 and plan.estimate.total <= 400 * MIB and plan.notes
    with pytest.raises(DoesNotFit):
        plan_for(Settings(), smollm2, machine(available=50 * MIB))


def test_estimate_as_asked_takes_one_slot_and_f16_when_left_to_the_guard(
    smollm2: ModelShape,
) -> None:
    request = load_request(Settings())
    assert estimate_as_asked(smollm2, request, 4096) == estimate_memory(smollm2, 4096)
    request = load_request(Settings(parallel=2, kv_type="q4_0"))
    expected = estimate_memory(smollm2, 4096, parallel=2, kv_type="q4_0")
    assert estimate_as_asked(smollm2, request, 4096) == expected
