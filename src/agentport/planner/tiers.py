"""Which common agent models fit which machines: the `agentport fit --tiers` table.

The models' architecture facts ship as data (`agent_models.json`); their Q4_K_M weights are
computed from the parameter count and Q4_K_M's bits per weight (4.8944, measured on
Llama-3.1-8B in llama.cpp's tools/quantize/README.md). A machine of N GB is assumed to have an
IDE and a browser open: its reserve is `default_reserve`, and each verdict is the guard's plan
at the agent floor with one slot and an automatic KV type, like a real load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from agentport.planner.budget import default_reserve, model_budget
from agentport.planner.estimate import estimate_memory
from agentport.planner.gguf_meta import ModelShape, shape_from_dict
from agentport.planner.guard import AGENT_FLOOR, DoesNotFit, LoadPlan, LoadRequest, plan_load
from agentport.planner.probes import DeviceMemory

GIB = 1 << 30
Q4_K_M_BITS_PER_WEIGHT = 4.8944
QUANT = "Q4_K_M"


@dataclass(slots=True, frozen=True)
class AgentModel:
    tag: str  # an Ollama name, or "" when none is unambiguous
    shape: ModelShape


@dataclass(slots=True, frozen=True)
class TierCell:
    machine_gb: int
    budget: int  # bytes models may use on that machine
    floor: int  # the context asked for
    plan: LoadPlan | None  # the guard's plan at the floor; None when nothing fits at all

    @property
    def fits(self) -> bool:
        return self.plan is not None and self.plan.n_ctx >= self.floor

    @property
    def verdict(self) -> str:
        """`fits`, `fits (q8_0)` (with that KV cache), `no: 12k max` (the longest context that
        fits) or `no`."""
        if self.plan is None:
            return "no"
        if not self.fits:
            return f"no: {self.plan.n_ctx // 1024}k max"
        return "fits" if self.plan.kv_type == "f16" else f"fits ({self.plan.kv_type})"


@dataclass(slots=True, frozen=True)
class TierRow:
    name: str
    tag: str
    quantization: str
    parameters: int
    weights: int  # bytes
    total_at_floor: int  # bytes at the floor with an f16 KV cache and one slot
    cells: tuple[TierCell, ...]


def agent_models() -> list[AgentModel]:
    """The shipped shapes, with Q4_K_M weights computed from their parameter counts."""
    text = resources.files("agentport.planner").joinpath("agent_models.json").read_text()
    models = []
    for item in json.loads(text)["models"]:
        weights = int(item["parameter_count"] * Q4_K_M_BITS_PER_WEIGHT / 8)
        facts = dict(item, quantization=QUANT, file_size=weights, weights_bytes=weights)
        models.append(AgentModel(tag=item.get("tag", ""), shape=shape_from_dict(facts)))
    return models


def machine(gb: int) -> DeviceMemory:
    """A machine of `gb` GiB with nothing loaded yet; its reserve covers the IDE and browser."""
    return DeviceMemory(total=gb * GIB, available=gb * GIB)


def tier_table(machines_gb=(16, 24, 48), floor: int = AGENT_FLOOR) -> list[TierRow]:
    rows = []
    for model in agent_models():
        shape = model.shape
        cells = tuple(_cell(shape, gb, floor) for gb in machines_gb)
        rows.append(
            TierRow(
                name=shape.name,
                tag=model.tag,
                quantization=shape.quantization,
                parameters=shape.parameter_count,
                weights=shape.weights,
                total_at_floor=estimate_memory(shape, floor).total,
                cells=cells,
            )
        )
    return rows


def _cell(shape: ModelShape, gb: int, floor: int) -> TierCell:
    device = machine(gb)
    budget = model_budget(device, default_reserve(device.total))
    request = LoadRequest(n_ctx=floor, parallel=1, kv_type=None, floor=floor)
    try:
        plan = plan_load(shape, request, budget)
    except DoesNotFit:
        plan = None
    return TierCell(machine_gb=gb, budget=budget, floor=floor, plan=plan)
