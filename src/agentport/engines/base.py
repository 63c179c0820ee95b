"""The Engine protocol and the values an engine's generation yields.

`generate` runs in a worker thread and yields, in order: one `Prefilled`, then `str` pieces of
text (never a split UTF-8 character), then one `Finished`. Those plain strings are the per-token
events: nothing else is built per token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
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


@dataclass(slots=True)
class Prefilled:
    prompt_tokens: int
    cached_tokens: int
    seconds: float


@dataclass(slots=True)
class Finished:
    reason: str  # "stop" (end of generation token), "length", "cancelled"
    output_tokens: int
    seconds: float  # decode time, first sampled token to the last


Generated = str | Prefilled | Finished


class Engine(Protocol):
    info: EngineInfo

    def tokenize(self, text: str) -> list[int]: ...

    def generate(
        self, tokens: list[int], params: SamplingParams, cancel: threading.Event
    ) -> Iterator[Generated]: ...

    def embed(self, texts: list[str], normalize: bool, truncate: bool) -> tuple[list, int]:
        """(one vector per text, tokens read); runs in the worker thread."""
        ...

    def close(self) -> None: ...
