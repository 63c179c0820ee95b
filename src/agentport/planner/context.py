"""How large a context to give a model: the agent default, capped by the memory available,
and the rope scaling that stretches a model trained on a shorter context.

`plan_context` is the simple cap (a fixed fraction of available memory for the rest of the
machine); `planner.guard.plan_load` is the full plan with slots, KV type and evictions.
"""

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
        return rope_scaling_text(self.yarn_factor, self.n_ctx_train)


def yarn_factor(shape: ModelShape, n_ctx: int) -> float:
    """How far YaRN must stretch the model to reach `n_ctx` (1.0: not at all). A GGUF that
    already asks for rope scaling of its own is left alone."""
    if n_ctx > shape.n_ctx_train > 0 and not shape.has_rope_scaling:
        return n_ctx / shape.n_ctx_train
    return 1.0


def rope_scaling_text(factor: float, n_ctx_train: int) -> str | None:
    """`yarn x4 from 8192`, or None when the context is not stretched."""
    if factor <= 1.0:
        return None
    return f"yarn x{factor:g} from {n_ctx_train}"


def plan_context(shape: ModelShape, requested: int, available_bytes: int) -> ContextPlan:
    budget = int(available_bytes * (1 - RESERVE_FRACTION)) - shape.file_size
    per_token = max(shape.kv_bytes_per_token(), 1)
    affordable = max(budget // per_token, ALIGN) // ALIGN * ALIGN
    n_ctx = min(requested, affordable)
    plan = ContextPlan(n_ctx=n_ctx, requested=requested, n_ctx_train=shape.n_ctx_train)
    plan.capped_by_memory = n_ctx < requested
    plan.yarn_factor = yarn_factor(shape, n_ctx)
    return plan
