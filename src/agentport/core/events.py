"""Stream events: what generation yields, consumed alike by the server, the CLI and the benches.

A generation is: PromptStart, then any mix of TextDelta / ThinkingDelta / ToolCallStart ->
ToolCallDelta* -> ToolCallEnd (Ping may come anytime), then exactly one Done or ErrorEvent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from agentport.errors import AgentportError


class FinishReason(str, enum.Enum):
    STOP = "stop"  # end of turn
    LENGTH = "length"  # max_tokens or the end of the context
    STOP_SEQUENCE = "stop_sequence"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache
    output_tokens: int = 0


@dataclass(slots=True)
class Timings:
    """Durations in seconds, measured by the runtime."""

    load: float = 0.0
    queue: float = 0.0
    prompt_eval: float = 0.0
    eval: float = 0.0
    total: float = 0.0

    @property
    def decode_rate(self) -> float:
        return 0.0 if self.eval <= 0 else 1.0 / self.eval


@dataclass(slots=True)
class PromptStart:
    """The prompt is tokenized; prefill is about to start (or queued)."""

    input_tokens: int
    model: str


@dataclass(slots=True)
class Ping:
    pass


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    text: str


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a piece of the arguments' JSON text; pieces concatenate


@dataclass(slots=True)
class ToolCallEnd:
    index: int
    cut: str | None = None  # the call's text as written, where the output ended inside it


@dataclass(slots=True)
class Done:
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)
    stop_sequence: str | None = None


@dataclass(slots=True)
class ErrorEvent:
    error: AgentportError


StreamEvent = (
    PromptStart
    | Ping
    | TextDelta
    | ThinkingDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | Done
    | ErrorEvent
)
