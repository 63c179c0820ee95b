"""How large a context to give a model: the agent default, capped by the memory available,
and the rope scaling that stretches a model trained on a shorter context."""

from __future__ import annotations

from dataclasses import dataclass

from agentport.planner.gguf_meta import ModelShape

RESERVE_FRACTION = 0.25  # left to the rest of the machine (IDE, browser, OS)
ALIGN = 256


@dataclass(slots=True)
class ContextPlan:
    n_ctx: int
    requested: int
    yarn_factor: float = 1.0  # > 1: extended with YaRN from n_ctx_train
    n_ctx_train: int = 0
    capped_by_memory: bool = False

    @property
    def rope_scaling(self) -> str | None:
        if self.yarn_factor <= 1.0:
            return None
        return f"yarn x{self.yarn_factor:g} from {self.n_ctx_train}"


def plan_context(shape: ModelShape, requested: int, available_bytes: int) -> ContextPlan:
    budget = int(available_bytes * (1 - RESERVE_FRACTION)) - shape.file_size
    per_token = max(shape.kv_bytes_per_token(), 1)
    affordable = max(budget // per_token, ALIGN) // ALIGN * ALIGN
    n_ctx = min(requested, affordable)
    plan = ContextPlan(n_ctx=n_ctx, requested=requested, n_ctx_train=shape.n_ctx_train)
    plan.capped_by_memory = n_ctx < requested
    if n_ctx > shape.n_ctx_train > 0 and not shape.has_rope_scaling:
        plan.yarn_factor = n_ctx / shape.n_ctx_train
    return plan
