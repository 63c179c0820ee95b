"""Requests, messages, content parts, tools and sampling parameters, free of any wire dialect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class ThinkingPart:
    text: str
    signature: str = ""


@dataclass(slots=True)
class ImagePart:
    media_type: str
    data: str  # base64, or a URL when `is_url`
    is_url: bool = False


@dataclass(slots=True)
class ToolUsePart:
    """A tool call the assistant made earlier in the conversation."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(slots=True)
class ToolResultPart:
    tool_use_id: str
    content: list[ContentPart]
    is_error: bool = False
    name: str = ""  # the tool's name where the dialect carries it


ContentPart = TextPart | ThinkingPart | ImagePart | ToolUsePart | ToolResultPart


@dataclass(slots=True)
class Message:
    role: Role
    content: list[ContentPart]

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None


@dataclass(slots=True)
class ToolCall:
    """A tool call parsed from the model's output."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens
    grammar: str | None = None  # GBNF the output must follow (a forced tool call)
    # With triggers the grammar is lazy (tool_choice auto): it applies from the first trigger
    # on. Each is (text, pattern): the text where the vocabulary has it as one token, else the
    # regex, matched against the end of the output so far; the grammar starts at its first group.
    grammar_triggers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class OutputFormat:
    """Constrain the answer: any JSON object (`schema` None) or JSON valid against `schema`."""

    schema: dict[str, Any] | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    thinking: bool | None = None  # None: the model's default
    stream: bool = False
    session_id: str | None = None  # a cache-affinity key, e.g. Claude Code's session header
    output_format: OutputFormat | None = None
    prompt: str | None = None  # raw prompt text, used as is instead of rendering `messages`
    suffix: str | None = None  # text after the cursor, for fill-in-the-middle
    keep_alive: str | float | None = None  # as the client sent it; None: the default


@dataclass(slots=True)
class EmbedRequest:
    model: str
    inputs: list[str]
    normalize: bool = True
    truncate: bool = True
    keep_alive: str | float | None = None
