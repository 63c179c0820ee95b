"""The Anthropic Messages API: wire models, request -> core, core events -> SSE / JSON.

Everything Claude Code sends is accepted: system as a string or blocks, `cache_control`,
`metadata`, `thinking`, `context_management`, `output_config`, mid-conversation `system`
messages, tool results as strings or blocks. Unknown block types from newer betas are skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from agentport.api.common import ChatCodec, Lenient, validate
from agentport.core import (
    ChatRequest,
    ContentPart,
    Done,
    ErrorEvent,
    FinishReason,
    ImagePart,
    Message,
    Ping,
    PromptStart,
    SamplingParams,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Usage,
)
from agentport.errors import AgentportError, InvalidRequestError

# --- wire models ---------------------------------------------------------------------------


class WireTool(Lenient):
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class WireMessage(Lenient):
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class WireThinking(Lenient):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class WireToolChoice(Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None


class CountTokensRequest(Lenient):
    model: str = Field(min_length=1)
    messages: list[WireMessage]
    system: str | list[dict[str, Any]] | None = None
    tools: list[WireTool] | None = None
    tool_choice: WireToolChoice | None = None
    thinking: WireThinking | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    metadata: dict[str, Any] | None = None
    # Extensions some local clients send (llama-server accepts the same names).
    seed: int | None = None
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, ge=0.0)
    ignore_eos: bool = False


# --- request -> core ---------------------------------------------------------------------

SESSION_HEADER = "x-claude-code-session-id"  # Claude Code's session: the cache-affinity key


def decode_messages(body: object, session_id: str | None = None) -> ChatRequest:
    wire: MessagesRequest = validate(MessagesRequest, body)  # type: ignore[assignment]
    request = _decode_common(wire)
    request.stream = wire.stream
    request.session_id = session_id
    request.sampling = _sampling(wire)
    return request


def decode_count_tokens(body: object) -> ChatRequest:
    wire: CountTokensRequest = validate(CountTokensRequest, body)  # type: ignore[assignment]
    return _decode_common(wire)


def _decode_common(wire: CountTokensRequest) -> ChatRequest:
    messages: list[Message] = []
    system = _system_parts(wire.system)
    if system:
        messages.append(Message(role="system", content=system))
    for index, message in enumerate(wire.messages):
        parts = _parts(message.content, f"messages.{index}.content")
        messages.append(Message(role=message.role, content=parts))
    if not wire.messages:
        raise InvalidRequestError("messages: at least one message is required", "messages")
    tools = [_tool(t) for t in wire.tools or [] if _is_client_tool(t)]
    return ChatRequest(
        model=wire.model,
        messages=messages,
        tools=tools,
        tool_choice=_tool_choice(wire.tool_choice, tools),
        thinking=_thinking(wire.thinking),
    )


def _sampling(wire: MessagesRequest) -> SamplingParams:
    params = SamplingParams(max_tokens=wire.max_tokens, stop=list(wire.stop_sequences or []))
    params.temperature = 1.0 if wire.temperature is None else wire.temperature
    if wire.top_p is not None:
        params.top_p = wire.top_p
    if wire.top_k is not None:
        params.top_k = wire.top_k
    if wire.min_p is not None:
        params.min_p = wire.min_p
    if wire.repeat_penalty is not None:
        params.repeat_penalty = wire.repeat_penalty
    params.seed = wire.seed
    params.ignore_eos = wire.ignore_eos
    return params


def _system_parts(system: str | list[dict[str, Any]] | None) -> list[ContentPart]:
    if system is None:
        return []
    if isinstance(system, str):
        return [TextPart(system)] if system else []
    return [p for p in _parts(system, "system") if isinstance(p, TextPart)]


def _parts(content: str | list[dict[str, Any]], where: str) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[ContentPart] = []
    for index, block in enumerate(content):
        part = _block(block, f"{where}.{index}")
        if part is not None:
            parts.append(part)
    return parts


def _block(block: dict[str, Any], where: str) -> ContentPart | None:
    kind = block.get("type")
    try:
        if kind == "text":
            return TextPart(str(block["text"]))
        if kind == "thinking":
            return ThinkingPart(str(block.get("thinking", "")), str(block.get("signature", "")))
        if kind == "tool_use":
            return _tool_use(block)
        if kind == "tool_result":
            return _tool_result(block, where)
        if kind in ("image", "document"):
            return _media(block, where)
    except (KeyError, TypeError) as exc:
        raise InvalidRequestError(f"{where}: malformed '{kind}' block ({exc})", where) from exc
    if not isinstance(kind, str):
        raise InvalidRequestError(f"{where}.type: a content block needs a type", where)
    return None  # redacted_thinking, server tool blocks and future betas: nothing to render


def _tool_use(block: dict[str, Any]) -> ToolUsePart:
    arguments = block.get("input") or {}
    if not isinstance(arguments, dict):
        raise TypeError("input must be an object")
    return ToolUsePart(id=str(block["id"]), name=str(block["name"]), input=arguments)


def _tool_result(block: dict[str, Any], where: str) -> ToolResultPart:
    content = block.get("content", "")
    inner = _parts(content, f"{where}.content") if content else []
    return ToolResultPart(
        tool_use_id=str(block["tool_use_id"]),
        content=inner,
        is_error=bool(block.get("is_error", False)),
    )


def _media(block: dict[str, Any], where: str) -> ContentPart:
    source = block.get("source") or {}
    if block["type"] == "document" and source.get("type") == "text":
        return TextPart(str(source.get("data", "")))
    if source.get("type") == "url":
        return ImagePart(media_type="", data=str(source.get("url", "")), is_url=True)
    return ImagePart(media_type=str(source.get("media_type", "")), data=str(source.get("data", "")))


def _is_client_tool(tool: WireTool) -> bool:
    """Server tools (web search, code execution, ...) carry a versioned type and no schema."""
    return tool.input_schema is not None or tool.type in (None, "custom")


def _tool(tool: WireTool) -> ToolSpec:
    return ToolSpec(
        name=tool.name, description=tool.description, input_schema=tool.input_schema or {}
    )


def _tool_choice(choice: WireToolChoice | None, tools: list[ToolSpec]) -> ToolChoice:
    if choice is None:
        return ToolChoice()
    if choice.type == "tool" and not choice.name:
        raise InvalidRequestError("tool_choice.name: required when type is 'tool'", "tool_choice")
    if choice.type == "tool" and choice.name not in {t.name for t in tools}:
        raise InvalidRequestError(
            f"tool_choice names an unknown tool '{choice.name}'", "tool_choice"
        )
    if choice.type == "any" and not tools:
        raise InvalidRequestError("tool_choice 'any' needs at least one tool", "tool_choice")
    return ToolChoice(mode=choice.type, name=choice.name)


def _thinking(thinking: WireThinking | None) -> bool | None:
    if thinking is None:
        return None
    return thinking.type != "disabled"


# --- core -> wire ------------------------------------------------------------------------

STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CANCELLED: "end_turn",
}

ERROR_TYPES = {
    "invalid_request": (400, "invalid_request_error"),
    "authentication": (401, "authentication_error"),
    "permission": (403, "permission_error"),
    "not_found": (404, "not_found_error"),
    "request_too_large": (413, "request_too_large"),
    "rate_limit": (429, "rate_limit_error"),
    "overloaded": (529, "overloaded_error"),
    "cancelled": (499, "api_error"),
    "upstream": (502, "api_error"),
    "internal": (500, "api_error"),
}

THINKING_SIGNATURE = "agentport-local"


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def error_body(error: AgentportError) -> tuple[int, dict[str, Any]]:
    status, kind = ERROR_TYPES.get(error.kind, (500, "api_error"))
    return status, {"type": "error", "error": {"type": kind, "message": error.message}}


def usage_dict(usage: Usage) -> dict[str, Any]:
    """Anthropic's usage: `input_tokens` counts only the prompt tokens not read from cache, so
    input + cache read + cache creation is the whole prompt (clients sum them)."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
    }


def _frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


PING_FRAME = 'event: ping\ndata: {"type": "ping"}\n\n'
# The most frequent frame, formatted without building a dict per token.
TEXT_DELTA_FRAME = (
    "event: content_block_delta\n"
    'data: {"type": "content_block_delta", "index": %d, '
    '"delta": {"type": "text_delta", "text": %s}}\n\n'
)


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class StreamEncoder:
    """Core events -> Anthropic SSE frames: a small state machine over content blocks."""

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self.block_index = -1
        self.block_kind: str | None = None

    def start(self, usage: Usage) -> str:
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_dict(usage),
        }
        return _frame("message_start", {"type": "message_start", "message": message})

    def encode_batch(self, batch: list[StreamEvent]) -> str:
        return "".join(self.encode(event) for event in batch)

    def encode(self, event: StreamEvent) -> str:
        if isinstance(event, PromptStart):
            return self.start(Usage(input_tokens=event.input_tokens))
        if isinstance(event, Ping):
            return PING_FRAME
        if isinstance(event, TextDelta):
            opened = self._open("text") if self.block_kind != "text" else ""
            return opened + TEXT_DELTA_FRAME % (self.block_index, _json(event.text))
        if isinstance(event, ThinkingDelta):
            delta = {"type": "thinking_delta", "thinking": event.text}
            return self._open("thinking") + self._delta(delta)
        if isinstance(event, ToolCallStart):
            return self._close() + self._start_block(
                "tool_use",
                {"type": "tool_use", "id": "toolu_" + event.id, "name": event.name, "input": {}},
            )
        if isinstance(event, ToolCallDelta):
            return self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, ToolCallEnd):
            return self._close()
        if isinstance(event, Done):
            return self._done(event)
        if isinstance(event, ErrorEvent):
            _, body = error_body(event.error)
            return _frame("error", body)
        return ""

    def _open(self, kind: str) -> str:
        if self.block_kind == kind:
            return ""
        empty = {"type": "text", "text": ""}
        if kind == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
        return self._close() + self._start_block(kind, empty)

    def _start_block(self, kind: str, block: dict[str, Any]) -> str:
        self.block_index += 1
        self.block_kind = kind
        data = {"type": "content_block_start", "index": self.block_index, "content_block": block}
        return _frame("content_block_start", data)

    def _delta(self, delta: dict[str, Any]) -> str:
        data = {"type": "content_block_delta", "index": self.block_index, "delta": delta}
        return _frame("content_block_delta", data)

    def _close(self) -> str:
        if self.block_kind is None:
            return ""
        out = ""
        if self.block_kind == "thinking":
            out = self._delta({"type": "signature_delta", "signature": THINKING_SIGNATURE})
        self.block_kind = None
        stop = {"type": "content_block_stop", "index": self.block_index}
        return out + _frame("content_block_stop", stop)

    def _done(self, done: Done) -> str:
        delta = {
            "stop_reason": STOP_REASONS[done.finish_reason],
            "stop_sequence": done.stop_sequence,
        }
        data = {"type": "message_delta", "delta": delta, "usage": usage_dict(done.usage)}
        return (
            self._close()
            + _frame("message_delta", data)
            + _frame("message_stop", {"type": "message_stop"})
        )


class MessageBuilder:
    """Core events -> one non-streaming Anthropic message."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.content: list[dict[str, Any]] = []
        self.arguments: dict[int, list[str]] = {}
        self.blocks: dict[int, dict[str, Any]] = {}

    def add(self, event: StreamEvent) -> None:
        last = self.content[-1] if self.content else None
        if isinstance(event, TextDelta):
            if last and last["type"] == "text":
                last["text"] += event.text
            else:
                self.content.append({"type": "text", "text": event.text})
        elif isinstance(event, ThinkingDelta):
            if last and last["type"] == "thinking":
                last["thinking"] += event.text
            else:
                block = {"type": "thinking", "thinking": event.text}
                self.content.append(block | {"signature": THINKING_SIGNATURE})
        elif isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": "toolu_" + event.id, "name": event.name, "input": {}}
            self.content.append(block)
            self.blocks[event.index] = block
            self.arguments[event.index] = []
        elif isinstance(event, ToolCallDelta):
            self.arguments[event.index].append(event.arguments)
        elif isinstance(event, ToolCallEnd):
            text = "".join(self.arguments[event.index])
            self.blocks[event.index]["input"] = json.loads(text) if text else {}

    def build(self, done: Done, message_id: str | None = None) -> dict[str, Any]:
        return {
            "id": message_id or new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content,
            "stop_reason": STOP_REASONS[done.finish_reason],
            "stop_sequence": done.stop_sequence,
            "usage": usage_dict(done.usage),
        }


def models_page(models: list[tuple[str, float]]) -> dict[str, Any]:
    """GET /v1/models in the Anthropic shape; models as (name, modified unix time)."""
    data = [
        {
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(modified)),
        }
        for name, modified in models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _decode_codec(body: object, headers: Mapping[str, str]) -> tuple[ChatRequest, None]:
    return decode_messages(body, session_id=headers.get(SESSION_HEADER)), None


MESSAGES: ChatCodec[None] = ChatCodec(
    framing="sse",
    decode=_decode_codec,
    stream_encoder=lambda chat, _: StreamEncoder(chat.model),
    builder=lambda chat, _: MessageBuilder(chat.model),
)
