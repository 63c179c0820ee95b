"""The OpenAI Responses API (`POST /v1/responses`): wire models, request -> core, core events ->
SSE / JSON, as OpenAI's Codex CLI and the `openai` SDK use it.

Input items: messages (roles developer and system become system messages, anywhere in the
conversation), `function_call` (an earlier call: a tool use in an assistant message) and
`function_call_output` (a tool result in a user message). Reasoning items and unknown item types
are skipped. Function tools are honoured; tools of other types (`web_search`, `local_shell`,
`custom`, `namespace`, ...) are ignored rather than rejected. Nothing is stored: `store` is
accepted either way, and `previous_response_id` is refused (the client must send the whole
conversation, as Codex does with `store: false`).

Every stream ends in `response.completed` (status `completed`, or `incomplete` when the output
hit `max_output_tokens`) or `response.failed`: Codex retries a stream that ends without one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    OutputFormat,
    Ping,
    PromptStart,
    SamplingParams,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Usage,
)
from agentport.errors import (
    AgentportError,
    InvalidRequestError,
    PromptTooLongError,
    UnsupportedContentError,
)

# --- wire models ---------------------------------------------------------------------------


class ResponsesRequest(Lenient):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    previous_response_id: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    truncation: str | None = None
    user: str | None = None
    service_tier: str | None = None


@dataclass(slots=True)
class Echo:
    """Request fields the response object repeats back, as the client sent them."""

    model: str
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    max_output_tokens: int | None = None
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    reasoning: dict[str, Any] = field(default_factory=lambda: {"effort": None, "summary": None})
    metadata: dict[str, Any] = field(default_factory=dict)
    prompt_cache_key: str | None = None
    store: bool = False
    truncation: str = "disabled"
    user: str | None = None


# --- request -> core ---------------------------------------------------------------------


def decode_responses(body: object) -> tuple[ChatRequest, Echo]:
    """A Responses request body -> the core request and the fields to echo back."""
    wire: ResponsesRequest = validate(ResponsesRequest, body)  # type: ignore[assignment]
    if wire.previous_response_id:
        raise InvalidRequestError(
            "previous_response_id: responses are not stored here; send the whole conversation",
            "previous_response_id",
        )
    tools = [_tool(t, i) for i, t in enumerate(wire.tools or []) if t.get("type") == "function"]
    choice, tools = _tool_choice(wire.tool_choice, tools)
    chat = ChatRequest(
        model=wire.model,
        messages=_messages(wire),
        tools=tools,
        tool_choice=choice,
        sampling=_sampling(wire),
        thinking=_thinking(wire.reasoning),
        stream=wire.stream,
        session_id=wire.prompt_cache_key,
        output_format=_output_format(wire.text),
    )
    return chat, _echo(wire, tools)


def decode_input_tokens(body: object) -> ChatRequest:
    """`POST /v1/responses/input_tokens`: the same body, only counted."""
    chat, _ = decode_responses(body)
    return chat


def _echo(wire: ResponsesRequest, tools: list[ToolSpec]) -> Echo:
    echo = Echo(model=wire.model, instructions=wire.instructions)
    echo.tools = [_tool_dict(t) for t in tools]
    echo.tool_choice = wire.tool_choice if wire.tool_choice is not None else "auto"
    echo.parallel_tool_calls = wire.parallel_tool_calls is not False
    echo.temperature = 1.0 if wire.temperature is None else wire.temperature
    echo.top_p = 1.0 if wire.top_p is None else wire.top_p
    echo.max_output_tokens = wire.max_output_tokens
    if wire.text:
        echo.text = {"format": {"type": "text"}} | wire.text
    if wire.reasoning:
        echo.reasoning = {"effort": None, "summary": None} | wire.reasoning
    echo.metadata = dict(wire.metadata or {})
    echo.prompt_cache_key = wire.prompt_cache_key
    echo.store = bool(wire.store)
    echo.truncation = wire.truncation or "disabled"
    echo.user = wire.user
    return echo


def _sampling(wire: ResponsesRequest) -> SamplingParams:
    params = SamplingParams(max_tokens=wire.max_output_tokens)
    params.temperature = 1.0 if wire.temperature is None else wire.temperature
    if wire.top_p is not None:
        params.top_p = wire.top_p
    return params


def _thinking(reasoning: dict[str, Any] | None) -> bool | None:
    effort = (reasoning or {}).get("effort")
    if effort is None:
        return None
    return effort != "none"


def _output_format(text: dict[str, Any] | None) -> OutputFormat | None:
    fmt = (text or {}).get("format") or {}
    kind = fmt.get("type", "text")
    if kind == "json_object":
        return OutputFormat(None)
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError("text.format.schema: a JSON schema object is required")
        return OutputFormat(schema)
    if kind != "text":
        raise InvalidRequestError(f"text.format.type: unsupported format '{kind}'", "text.format")
    return None


def _tool(tool: dict[str, Any], index: int) -> ToolSpec:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"tools.{index}.name: a function tool needs a name", "tools")
    parameters = tool.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidRequestError(f"tools.{index}.parameters: must be an object", "tools")
    return ToolSpec(
        name=name, description=str(tool.get("description") or ""), input_schema=parameters
    )


def _tool_dict(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.input_schema,
        "strict": False,
    }


def _tool_choice(
    choice: str | dict[str, Any] | None, tools: list[ToolSpec]
) -> tuple[ToolChoice, list[ToolSpec]]:
    """The core tool choice, and the tools left once an `allowed_tools` choice narrows them."""
    if choice is None or choice == "auto":
        return ToolChoice("auto"), tools
    if choice in ("none", "required"):
        return ToolChoice("none" if choice == "none" else "any"), tools
    if not isinstance(choice, dict):
        raise InvalidRequestError(f"tool_choice: unknown value '{choice}'", "tool_choice")
    if choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or name not in {t.name for t in tools}:
            raise InvalidRequestError(
                f"tool_choice.name: no function tool named '{name}'", "tool_choice"
            )
        return ToolChoice("tool", name), tools
    if choice.get("type") == "allowed_tools":
        return _allowed_tools(choice, tools)
    return ToolChoice("auto"), tools  # a hosted tool we ignore: let the model choose


def _allowed_tools(
    choice: dict[str, Any], tools: list[ToolSpec]
) -> tuple[ToolChoice, list[ToolSpec]]:
    allowed = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
    kept = [t for t in tools if t.name in allowed]
    return ToolChoice("any" if choice.get("mode") == "required" else "auto"), kept


def _messages(wire: ResponsesRequest) -> list[Message]:
    messages: list[Message] = []
    if wire.instructions:
        messages.append(Message(role="system", content=[TextPart(wire.instructions)]))
    if isinstance(wire.input, str):
        messages.append(Message(role="user", content=[TextPart(wire.input)]))
    else:
        _items(wire.input, messages)
    if not any(m.role != "system" for m in messages):
        raise InvalidRequestError("input: at least one input message is required", "input")
    return messages


def _items(items: list[dict[str, Any]], messages: list[Message]) -> None:
    names: dict[str, str] = {}  # call_id -> function name, for the outputs that follow
    for index, item in enumerate(items):
        where = f"input.{index}"
        kind = item.get("type", "message" if "role" in item else None)
        try:
            if kind == "message":
                _append(messages, _message(item, where), merge=False)
            elif kind == "function_call":
                part = _function_call(item)
                names[part.id] = part.name
                _append(messages, Message(role="assistant", content=[part]), merge=True)
            elif kind == "function_call_output":
                part = _function_output(item, where, names)
                _append(messages, Message(role="user", content=[part]), merge=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"{where}: malformed '{kind}' item ({exc})", where) from exc
        # reasoning, item_reference, hosted tool calls, future item types: nothing to render


def _append(messages: list[Message], message: Message, merge: bool) -> None:
    """Tool calls join the assistant message before them; tool results join each other."""
    last = messages[-1] if messages else None
    if merge and last is not None and last.role == message.role:
        joinable = all(isinstance(p, ToolResultPart) for p in last.content)
        if message.role == "assistant" or joinable:
            last.content.extend(message.content)
            return
    messages.append(message)


ROLES = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}


def _message(item: dict[str, Any], where: str) -> Message:
    role = item["role"]
    if role not in ROLES:
        raise InvalidRequestError(f"{where}.role: unknown role '{role}'", where)
    return Message(role=ROLES[role], content=_content(item.get("content", ""), where))  # type: ignore[arg-type]


def _content(content: str | list[Any], where: str) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise TypeError("content must be a string or a list of parts")
    parts = [_part(part, f"{where}.content.{i}") for i, part in enumerate(content)]
    return [p for p in parts if p is not None]


def _part(part: dict[str, Any], where: str) -> ContentPart | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(str(part["text"]))
    if kind == "refusal":
        return TextPart(str(part.get("refusal", "")))
    if kind == "input_image":
        return _image(part, where)
    if kind == "input_file":
        raise UnsupportedContentError(f"{where}: input_file parts are not supported", where)
    return None


def _image(part: dict[str, Any], where: str) -> ImagePart:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise UnsupportedContentError(f"{where}: only images given by image_url are supported")
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(";base64,", 1)
        return ImagePart(media_type=header, data=data)
    return ImagePart(media_type="", data=url, is_url=True)


def _function_call(item: dict[str, Any]) -> ToolUsePart:
    arguments = item.get("arguments") or "{}"
    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    if not isinstance(parsed, dict):
        parsed = {"value": parsed}
    return ToolUsePart(id=str(item["call_id"]), name=str(item["name"]), input=parsed)


def _function_output(item: dict[str, Any], where: str, names: dict[str, str]) -> ToolResultPart:
    call_id = str(item["call_id"])
    output = item.get("output", "")
    content = _content(output, f"{where}.output") if output else []
    return ToolResultPart(tool_use_id=call_id, content=content, name=names.get(call_id, ""))


# --- core -> wire ------------------------------------------------------------------------

STATUSES = {
    FinishReason.STOP: "completed",
    FinishReason.STOP_SEQUENCE: "completed",
    FinishReason.TOOL_CALLS: "completed",
    FinishReason.LENGTH: "incomplete",
    FinishReason.CANCELLED: "cancelled",
}

ERROR_CODES = {
    "invalid_request": "invalid_prompt",
    "rate_limit": "rate_limit_exceeded",
    "overloaded": "server_is_overloaded",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def error_code(error: AgentportError) -> str:
    if isinstance(error, PromptTooLongError):
        return "context_length_exceeded"  # Codex recognises it and compacts instead of retrying
    return ERROR_CODES.get(error.kind, "server_error")


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [part] if status != "in_progress" else [],
    }


def reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if status != "in_progress" else []
    return {"type": "reasoning", "id": item_id, "status": status, "summary": summary}


def function_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_object(
    echo: Echo, response_id: str, created_at: int, status: str, output: list[dict[str, Any]]
) -> dict[str, Any]:
    """The response object; the caller sets `usage`, `error` and `incomplete_details`."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": echo.model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": None,
        "prompt_cache_key": echo.prompt_cache_key,
        "reasoning": echo.reasoning,
        "store": echo.store,
        "temperature": echo.temperature,
        "text": echo.text,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": echo.truncation,
        "usage": None,
        "user": echo.user,
        "metadata": echo.metadata,
    }


def finished_object(
    echo: Echo, response_id: str, created_at: int, output: list[dict[str, Any]], done: Done
) -> dict[str, Any]:
    status = STATUSES[done.finish_reason]
    response = response_object(echo, response_id, created_at, status, output)
    response["completed_at"] = int(time.time())
    response["usage"] = usage_dict(done.usage)
    if done.finish_reason is FinishReason.LENGTH:
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    return response


def _frame(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# The most frequent frames, formatted without building a dict per token.
TEXT_DELTA_FRAME = (
    "event: response.output_text.delta\n"
    'data: {"type": "response.output_text.delta", "sequence_number": %d, "item_id": "%s", '
    '"output_index": %d, "content_index": 0, "delta": %s, "logprobs": []}\n\n'
)
ARGUMENTS_DELTA_FRAME = (
    "event: response.function_call_arguments.delta\n"
    'data: {"type": "response.function_call_arguments.delta", "sequence_number": %d, '
    '"item_id": "%s", "output_index": %d, "delta": %s}\n\n'
)


@dataclass(slots=True)
class _Open:
    """An output item being streamed."""

    kind: str  # message | reasoning | function_call
    item_id: str
    index: int  # its output_index
    pieces: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class StreamEncoder:
    """Core events -> Responses SSE frames: a small state machine over output items."""

    def __init__(self, echo: Echo, response_id: str | None = None) -> None:
        self.echo = echo
        self.response_id = response_id or new_id("resp")
        self.created_at = int(time.time())
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.current: _Open | None = None
        self.calls: dict[int, _Open] = {}

    def encode_batch(self, batch: list[StreamEvent]) -> str:
        return "".join(self.encode(event) for event in batch)

    def encode(self, event: StreamEvent) -> str:
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, ToolCallDelta):
            return self._arguments(event)
        if isinstance(event, ThinkingDelta):
            return self._thinking(event.text)
        if isinstance(event, ToolCallStart):
            return self._close() + self._open_call(event)
        if isinstance(event, ToolCallEnd):
            return self._close()
        if isinstance(event, PromptStart):
            return self._lifecycle("response.created") + self._lifecycle("response.in_progress")
        if isinstance(event, Ping):
            return self._lifecycle("response.in_progress")  # keeps the client's idle timer fed
        if isinstance(event, Done):
            return self._done(event)
        if isinstance(event, ErrorEvent):
            return self._failed(event.error)
        return ""

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def _emit(self, kind: str, **fields: Any) -> str:
        return _frame({"type": kind, "sequence_number": self._next(), **fields})

    def _lifecycle(self, kind: str) -> str:
        response = response_object(self.echo, self.response_id, self.created_at, "in_progress", [])
        return self._emit(kind, response=response)

    def _text(self, text: str) -> str:
        opened = (
            self._open("message") if self.current is None or self.current.kind != "message" else ""
        )
        item = self.current
        assert item is not None
        item.pieces.append(text)
        return opened + TEXT_DELTA_FRAME % (self._next(), item.item_id, item.index, _json(text))

    def _thinking(self, text: str) -> str:
        opened = (
            "" if self.current and self.current.kind == "reasoning" else self._open("reasoning")
        )
        item = self.current
        assert item is not None
        item.pieces.append(text)
        ids = {"item_id": item.item_id, "output_index": item.index, "summary_index": 0}
        return opened + self._emit("response.reasoning_summary_text.delta", **ids, delta=text)

    def _arguments(self, event: ToolCallDelta) -> str:
        item = self.calls.get(event.index)
        if item is None:
            return ""
        item.pieces.append(event.arguments)
        delta = _json(event.arguments)
        return ARGUMENTS_DELTA_FRAME % (self._next(), item.item_id, item.index, delta)

    def _open(self, kind: str) -> str:
        closed = self._close()
        prefix = "msg" if kind == "message" else "rs"
        item = _Open(kind, new_id(prefix), len(self.output))
        self.current = item
        self.output.append({})  # the slot, filled when the item is done
        added = self._emit(
            "response.output_item.added",
            output_index=item.index,
            item=self._item(item, "in_progress"),
        )
        return closed + added + self._open_part(item)

    def _open_part(self, item: _Open) -> str:
        ids = {"item_id": item.item_id, "output_index": item.index}
        if item.kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            return self._emit("response.content_part.added", **ids, content_index=0, part=part)
        part = {"type": "summary_text", "text": ""}
        return self._emit(
            "response.reasoning_summary_part.added", **ids, summary_index=0, part=part
        )

    def _open_call(self, event: ToolCallStart) -> str:
        item = _Open("function_call", new_id("fc"), len(self.output))
        item.call_id, item.name = "call_" + event.id, event.name
        self.current = item
        self.calls[event.index] = item
        self.output.append({})
        added = self._item(item, "in_progress")
        return self._emit("response.output_item.added", output_index=item.index, item=added)

    def _item(self, item: _Open, status: str) -> dict[str, Any]:
        text = "".join(item.pieces)
        if item.kind == "message":
            return message_item(item.item_id, text, status)
        if item.kind == "reasoning":
            return reasoning_item(item.item_id, text, status)
        return function_item(item.item_id, item.call_id, item.name, text, status)

    def _close(self, status: str = "completed") -> str:
        item = self.current
        if item is None:
            return ""
        self.current = None
        final = self._item(item, status)
        self.output[item.index] = final
        closing = self._close_content(item, final)
        return closing + self._emit(
            "response.output_item.done", output_index=item.index, item=final
        )

    def _close_content(self, item: _Open, final: dict[str, Any]) -> str:
        ids = {"item_id": item.item_id, "output_index": item.index}
        if item.kind == "function_call":
            return self._emit(
                "response.function_call_arguments.done", **ids, arguments=final["arguments"]
            )
        if item.kind == "reasoning":
            part = final["summary"][0]
            return self._emit(
                "response.reasoning_summary_text.done", **ids, summary_index=0, text=part["text"]
            ) + self._emit(
                "response.reasoning_summary_part.done", **ids, summary_index=0, part=part
            )
        part = final["content"][0]
        text = self._emit(
            "response.output_text.done", **ids, content_index=0, text=part["text"], logprobs=[]
        )
        return text + self._emit("response.content_part.done", **ids, content_index=0, part=part)

    def _done(self, done: Done) -> str:
        status = "incomplete" if done.finish_reason is FinishReason.LENGTH else "completed"
        closed = self._close(status)
        output = [item for item in self.output if item]
        response = finished_object(self.echo, self.response_id, self.created_at, output, done)
        # Always `response.completed`: Codex and the SDK treat it as the one normal ending.
        return closed + self._emit("response.completed", response=response)

    def _failed(self, error: AgentportError) -> str:
        created = self._lifecycle("response.created") if self.sequence == 0 else ""
        closed = self._close("incomplete")
        output = [item for item in self.output if item]
        response = response_object(self.echo, self.response_id, self.created_at, "failed", output)
        response["error"] = {"code": error_code(error), "message": error.message}
        return created + closed + self._emit("response.failed", response=response)


class ResponseBuilder:
    """Core events -> one non-streaming response object."""

    def __init__(self, echo: Echo, response_id: str | None = None) -> None:
        self.echo = echo
        self.response_id = response_id or new_id("resp")
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, event: StreamEvent) -> None:
        last = self.output[-1] if self.output else None
        if isinstance(event, TextDelta):
            if last and last["type"] == "message":
                last["content"][0]["text"] += event.text
            else:
                self.output.append(message_item(new_id("msg"), event.text, "completed"))
        elif isinstance(event, ThinkingDelta):
            if last and last["type"] == "reasoning":
                last["summary"][0]["text"] += event.text
            else:
                self.output.append(reasoning_item(new_id("rs"), event.text, "completed"))
        elif isinstance(event, ToolCallStart):
            call = function_item(new_id("fc"), "call_" + event.id, event.name, "", "completed")
            self.output.append(call)
            self.calls[event.index] = call
        elif isinstance(event, ToolCallDelta) and event.index in self.calls:
            self.calls[event.index]["arguments"] += event.arguments

    def build(self, done: Done) -> dict[str, Any]:
        if done.finish_reason is FinishReason.LENGTH and self.output:
            self.output[-1]["status"] = "incomplete"
        return finished_object(self.echo, self.response_id, self.created_at, self.output, done)


def _decode_codec(body: object, headers: Mapping[str, str]) -> tuple[ChatRequest, Echo]:
    return decode_responses(body)


RESPONSES: ChatCodec[Echo] = ChatCodec(
    framing="sse",
    decode=_decode_codec,
    stream_encoder=lambda _, echo: StreamEncoder(echo),
    builder=lambda _, echo: ResponseBuilder(echo),
)
