"""The Engine protocol and the values an engine's generation emits.

`submit` queues a generation and returns at once; the engine's own decode thread then calls
`emit` with, in order: one `Prefilled`, `str` pieces of text (never a split UTF-8 character), and
one `Finished` — or an AgentportError instead of any of them. Those plain strings are the
per-token events: nothing else is built per token.
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


class Engine(Protocol):
    info: EngineInfo

    def tokenize(self, text: str) -> list[int]: ...

    def submit(
        self,
        tokens: list[int],
        params: SamplingParams,
        emit: Callable[[object], None],
        cancel: threading.Event,
    ) -> None:
        """Queue a generation; once `cancel` is set it ends within one decode step."""
        ...

    def slot_use(self) -> SlotUse: ...

    def embed(self, texts: list[str], normalize: bool, truncate: bool) -> tuple[list, int]:
        """(one vector per text, tokens read); runs in the worker thread."""
        ...

    def close(self) -> None: ...
