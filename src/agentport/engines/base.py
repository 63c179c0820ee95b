"""The Engine protocol and the values an engine's generation emits.

`constrain` compiles a request's grammar ahead, on the caller's worker thread. `submit` queues a
generation and returns at once; the engine's own decode thread then calls `emit` with, in order:
one `Prefilled`, `str` pieces of text (never a split UTF-8 character), and one `Finished` — or
an AgentportError instead of any of them. Those plain strings are the per-token events: nothing
else is built per token. `emit` may only file an item: when `deliver` is given, the engine calls
it once at the end of every decode step (once per distinct `deliver`, however many sequences
share it), and that hands the step's items on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agentport.core import SamplingParams


@dataclass(slots=True)
class EngineInfo:
    n_ctx: int
    n_ctx_train: int
    rope_scaling: str | None
    chat_template: str | None
    bos_token: str
    eos_token: str
    file_size: int
    architecture: str = ""
    quantization: str = ""
    parameter_count: int = 0
    threads: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    fim_tokens: tuple[str, str, str] | None = None  # prefix, suffix, middle markers
    control_texts: tuple[str, ...] = ()  # strings that tokenize as control tokens
    parallel: int = 1  # sequences served at once, each of n_ctx tokens
    kv_type: str = "f16"


@dataclass(slots=True)
class SlotUse:
    busy: int  # sequences generating now
    waiting: int  # jobs waiting for a free sequence


@dataclass(slots=True)
class Prefilled:
    prompt_tokens: int
    cached_tokens: int
    seconds: float  # admission to the end of prefill
    queued: float = 0.0  # waiting for a free slot


@dataclass(slots=True)
class Finished:
    reason: str  # "stop" (end of generation token), "length", "cancelled"
    output_tokens: int
    seconds: float  # decode time, first sampled token to the last


Generated = str | Prefilled | Finished


@dataclass(slots=True)
class Constraint:
    """A request's grammar as compiled by `Engine.constrain`, for one generation. `gate` is the
    engine's own object; None: no grammar, or one the engine cannot compile (the answer is then
    unconstrained and the parser decides)."""

    gate: object | None


class Engine(Protocol):
    info: EngineInfo

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]:
        """`text`'s tokens. `special`: control tokens' strings become those tokens (else they
        are plain text); `start`: `text` begins the prompt, so a BOS comes first where the
        model wants one (unless `text` already starts with it)."""
        ...

    def grammar_compiles(self, grammar: str) -> bool:
        """Whether the engine can constrain generation with `grammar` (GBNF)."""
        ...

    def constrain(self, params: SamplingParams) -> Constraint:
        """`params`' grammar compiled for one generation; blocking, so called on a worker
        thread, never on the event loop or the decode thread."""
        ...

    def submit(
        self,
        tokens: list[int],
        params: SamplingParams,
        emit: Callable[[object], None],
        cancel: threading.Event,
        constraint: Constraint | None = None,
        deliver: Callable[[], None] | None = None,
    ) -> None:
        """Queue a generation; once `cancel` is set it ends within one decode step. Without a
        `constraint` (from `constrain(params)`), `params`' grammar is compiled here, on the
        calling thread."""
        ...

    def slot_use(self) -> SlotUse: ...

    def embed(self, texts: list[str], normalize: bool, truncate: bool) -> tuple[list, int]:
        """(one vector per text, tokens read); runs in the worker thread."""
        ...

    def close(self) -> None: ...
