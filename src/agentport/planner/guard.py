"""The guard: before a model loads, its plan must fit the budget, adapting if it does not.

The order of adaptation: evict idle models (least recently used first); then use fewer parallel
slots; then a q8_0 KV cache; then a shorter context, down to the agent floor, and below it only
with a note, never below 2048 tokens. A number of slots or a KV type asked for explicitly is
kept as long as anything with it fits. When nothing fits, `DoesNotFit` says what would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from agentport.errors import InvalidRequestError
from agentport.planner.context import rope_scaling_text, yarn_factor
from agentport.planner.estimate import MemoryEstimate, estimate_memory
from agentport.planner.gguf_meta import ModelShape, format_params

AGENT_FLOOR = 32768  # tokens: Claude Code's prompt is about 20k, 32k leaves room to work
MIN_CONTEXT = 2048
AUTO_SLOTS = (4, 2, 1)
ALIGN = 256
GIB = 1 << 30
MIB = 1 << 20
# Bits per weight of smaller quants, measured on Llama-3.1-8B (llama.cpp tools/quantize/README)
SMALLER_QUANTS = (("Q4_K_M", 4.8944), ("Q3_K_M", 3.9960), ("Q2_K", 3.1593))


class DoesNotFit(InvalidRequestError):
    """No plan fits the budget; the message says what would."""

    def __init__(self, message: str, needed: int, budget: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.budget = budget


@dataclass(slots=True)
class LoadRequest:
    n_ctx: int = 32768  # wanted context per sequence
    parallel: int | None = None  # None: auto (largest of 4, 2, 1 that fits)
    kv_type: str | None = None  # None: auto (f16, then q8_0 if needed)
    batch_size: int = 512
    flash_attention: bool = True
    floor: int = AGENT_FLOOR


@dataclass(slots=True)
class LoadPlan:
    n_ctx: int
    parallel: int
    kv_type: str
    estimate: MemoryEstimate
    budget: int  # bytes the plan was checked against (the budget plus what evictions free)
    yarn_factor: float = 1.0  # >1: extend with YaRN from n_ctx_train
    evict: list[str] = field(default_factory=list)  # idle models to unload first, LRU order
    notes: list[str] = field(default_factory=list)  # human-readable adaptations made
    n_ctx_train: int = 0

    @property
    def rope_scaling(self) -> str | None:
        """`yarn x4 from 8192`, or None."""
        return rope_scaling_text(self.yarn_factor, self.n_ctx_train)


@dataclass(slots=True, frozen=True)
class _Stage:
    parallel: int
    kv_type: str
    min_ctx: int  # the shortest context this stage may shrink to


def plan_load(
    shape: ModelShape,
    request: LoadRequest,
    budget: int,
    idle: Iterable[tuple[str, int]] = (),
) -> LoadPlan:
    """The plan to load `shape` within `budget` bytes, evicting from `idle` ((name, bytes) of
    loaded models not in use, least recently used first) if needed. Raises DoesNotFit."""
    _check(request)
    idle = list(idle)
    most = budget + sum(size for _, size in idle)
    for stage in _stages(request):
        n_ctx = _largest_context(shape, request, stage, most)
        if n_ctx is not None:
            return _plan(shape, request, stage, n_ctx, budget, idle)
    raise _does_not_fit(shape, request, most)


def _check(request: LoadRequest) -> None:
    if request.n_ctx < 1:
        raise InvalidRequestError("the context must be at least 1 token", param="n_ctx")
    if request.parallel is not None and request.parallel < 1:
        raise InvalidRequestError("parallel slots must be at least 1", param="parallel")
    if request.kv_type not in (None, "f16", "q8_0", "q4_0"):
        raise InvalidRequestError(f"unknown KV cache type {request.kv_type!r}", param="kv_type")
    if request.kv_type not in (None, "f16") and not request.flash_attention:
        raise InvalidRequestError("a quantized KV cache needs flash attention", param="kv_type")


def _kv_types(request: LoadRequest) -> list[str]:
    if request.kv_type:
        return [request.kv_type]
    return ["f16", "q8_0"] if request.flash_attention else ["f16"]


def _stages(request: LoadRequest) -> Iterator[_Stage]:
    """The configurations to try, in the guard's order of adaptation."""
    wanted = request.n_ctx
    floor = min(request.floor, wanted)
    lowest = min(MIN_CONTEXT, wanted)
    kv_types = _kv_types(request)
    last_kv = kv_types[-1]
    if request.parallel is None:
        for slots in AUTO_SLOTS:
            yield _Stage(slots, kv_types[0], wanted)
        for kv_type in kv_types[1:]:
            yield _Stage(1, kv_type, wanted)
    else:
        for kv_type in kv_types:
            yield _Stage(request.parallel, kv_type, wanted)
        for slots in range(request.parallel, 0, -1):
            yield _Stage(slots, last_kv, floor)
    yield _Stage(1, last_kv, floor)
    yield _Stage(1, last_kv, lowest)


def _estimate(shape: ModelShape, request: LoadRequest, stage: _Stage, n_ctx: int) -> MemoryEstimate:
    return estimate_memory(
        shape,
        n_ctx,
        parallel=stage.parallel,
        kv_type=stage.kv_type,
        batch_size=request.batch_size,
        flash_attention=request.flash_attention,
    )


def _largest_context(
    shape: ModelShape, request: LoadRequest, stage: _Stage, budget: int
) -> int | None:
    """The longest context in [stage.min_ctx, request.n_ctx] that fits, or None."""

    def fits(n_ctx: int) -> bool:
        return _estimate(shape, request, stage, n_ctx).total <= budget

    wanted = request.n_ctx
    if fits(wanted):
        return wanted
    low, high = stage.min_ctx, wanted - 1
    if low > high or not fits(low):
        return None
    while low < high:  # fits(low) holds throughout
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return max(stage.min_ctx, low // ALIGN * ALIGN)


def _plan(
    shape: ModelShape,
    request: LoadRequest,
    stage: _Stage,
    n_ctx: int,
    budget: int,
    idle: list[tuple[str, int]],
) -> LoadPlan:
    estimate = _estimate(shape, request, stage, n_ctx)
    evict: list[str] = []
    for name, size in idle:
        if estimate.total <= budget:
            break
        evict.append(name)
        budget += size
    return LoadPlan(
        n_ctx=n_ctx,
        parallel=stage.parallel,
        kv_type=stage.kv_type,
        estimate=estimate,
        budget=budget,
        yarn_factor=yarn_factor(shape, n_ctx),
        evict=evict,
        notes=_notes(request, stage, n_ctx),
        n_ctx_train=shape.n_ctx_train,
    )


def _notes(request: LoadRequest, stage: _Stage, n_ctx: int) -> list[str]:
    notes = []
    if request.parallel is not None and stage.parallel < request.parallel:
        notes.append(f"{_slots(stage.parallel)} instead of {request.parallel}: they do not fit")
    elif request.parallel is None and stage.parallel < AUTO_SLOTS[0]:
        notes.append(f"{_slots(stage.parallel)}: {AUTO_SLOTS[0]} do not fit")
    if request.kv_type is None and stage.kv_type != "f16":
        notes.append(f"{stage.kv_type} KV cache: an f16 one does not fit")
    if n_ctx < request.n_ctx:
        note = f"context shrunk from {request.n_ctx} to {n_ctx} tokens to fit"
        if n_ctx < request.floor:
            note += (
                f", below the agent floor of {request.floor}: coding agents such as "
                "Claude Code need about 20k tokens of prompt"
            )
        notes.append(note)
    return notes


def _does_not_fit(shape: ModelShape, request: LoadRequest, most: int) -> DoesNotFit:
    smallest = _Stage(1, _kv_types(request)[-1], min(MIN_CONTEXT, request.n_ctx))
    needed = _estimate(shape, request, smallest, smallest.min_ctx).total
    what = shape.name or shape.architecture or "the model"
    message = (
        f"{what} does not fit: even with {smallest.min_ctx} tokens of context, 1 slot and "
        f"KV cache type {smallest.kv_type} it needs {_size(needed)}, and models may use "
        f"{_size(max(0, most))} here. {_suggestion(shape, needed, most)}"
    )
    return DoesNotFit(message, needed, most)


def _suggestion(shape: ModelShape, needed: int, most: int) -> str:
    """What would fit: a smaller quant of this model, or a smaller model."""
    weights, params = shape.weights, shape.parameter_count
    rest = needed - weights
    if params > 0:
        current_bpw = weights * 8 / params
        for quant, bpw in SMALLER_QUANTS:
            smaller = int(params * bpw / 8)
            if bpw < current_bpw - 0.1 and rest + smaller <= most:
                return f"A {quant} quant of it would fit (about {_size(rest + smaller)})."
    room = most - rest
    if room <= 0:
        return "Free memory (close applications) or lower the reserve (AGENTPORT_MEMORY_RESERVE)."
    largest = format_params(int(room * 8 / SMALLER_QUANTS[0][1]))
    return (
        f"A smaller model would fit: at most about {largest} parameters at Q4_K_M, "
        "or free memory (close applications)."
    )


def _slots(count: int) -> str:
    return f"{count} parallel slot{'s' if count != 1 else ''}"


def _size(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size / MIB:.0f} MiB"
