"""What the dialect translators share: lenient wire models, validation into one clear 400, the
chat codec every chat endpoint exports, and OpenAI's tool_choice forms (which /api/chat accepts
too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from agentport.core import ChatRequest, Done, StreamEvent, ToolChoice, ToolSpec
from agentport.errors import InvalidRequestError

Echo = TypeVar("Echo")  # what a codec's decode keeps for its encoders, beside the core request
Framing = Literal["sse", "ndjson"]


class Lenient(BaseModel):
    """A wire model that keeps fields it does not know: clients send newer fields all the time."""

    model_config = ConfigDict(extra="allow")


def validate(model: type[BaseModel], body: object) -> BaseModel:
    """Validate a decoded JSON body, turning pydantic's errors into one clear 400."""
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


# --- the chat codec ----------------------------------------------------------------------------


class EventEncoder(Protocol):
    """Core events -> the wire stream: one batch of events becomes one write."""

    def encode_batch(self, batch: list[StreamEvent]) -> str: ...


class AnswerBuilder(Protocol):
    """Core events -> one non-streaming answer."""

    def add(self, event: StreamEvent) -> None: ...

    def build(self, done: Done) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ChatCodec(Generic[Echo]):
    """Everything the server needs to serve one chat endpoint of a dialect.

    `decode` turns the JSON body and the headers into the core request and the dialect's echo
    (options the core request does not carry: `include_usage`, fields a response repeats back);
    `stream_encoder` and `builder` are made per request from both. `framing` names the stream's
    wire form. Where the dialect has requests that only load or unload the model (Ollama's),
    `loads_only` tells them apart and `load_answer` gives the JSON answer to one, from the
    request and "load" or "unload".
    """

    framing: Framing
    decode: Callable[[object, Mapping[str, str]], tuple[ChatRequest, Echo]]
    stream_encoder: Callable[[ChatRequest, Echo], EventEncoder]
    builder: Callable[[ChatRequest, Echo], AnswerBuilder]
    loads_only: Callable[[ChatRequest], bool] | None = None
    load_answer: Callable[[ChatRequest, str], dict[str, Any]] | None = None


# --- OpenAI's tool_choice ----------------------------------------------------------------------


def decode_tool_choice(choice: str | dict[str, Any] | None, tools: list[ToolSpec]) -> ToolChoice:
    """OpenAI's tool_choice (also accepted by /api/chat, which has none of its own)."""
    if choice is None or choice == "auto":
        return ToolChoice()
    if choice == "none":
        return ToolChoice(mode="none")
    if not tools:
        raise InvalidRequestError("tool_choice: needs tools", "tool_choice")
    if choice == "required":
        return ToolChoice(mode="any")
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not name:
        raise InvalidRequestError(
            'tool_choice: expected "auto", "none", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            "tool_choice",
        )
    if name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice: no tool named {name!r}", "tool_choice")
    return ToolChoice(mode="tool", name=name)
