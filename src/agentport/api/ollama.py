"""The Ollama API (`/api/*`): wire models, request -> core, core events -> NDJSON / JSON.

Pure functions and small state machines, no I/O:

- `/api/chat` and `/api/generate` bodies -> `ChatRequest`. `stream` defaults to true, as in
  Ollama. `options` carries the sampling knobs; `num_ctx` and `num_thread` are accepted and
  ignored (the server sizes the context and the threads). A non-empty `template` on
  /api/generate is refused with a 400: the model's own chat template is always used.
  /api/chat also takes OpenAI's `tool_choice` ("required" or a named function forces a call),
  which Ollama's API lacks.
- Core events -> Ollama's NDJSON lines (`ChatStreamEncoder`, `GenerateStreamEncoder`) or one
  JSON object (`ChatBuilder`, `GenerateBuilder`). Text and thinking that arrive in one batch
  share a line; a tool call is sent whole, its arguments as an object, once it is complete.
  Durations are integer nanoseconds; `prompt_eval_count` counts the prompt tokens actually
  evaluated (those not reused from the prefix cache).
- Embeddings (/api/embed, /api/embeddings). Managing models: `ollama_models`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import Field

from agentport.api.common import ChatCodec, Lenient, decode_tool_choice, validate
from agentport.core import (
    ChatRequest,
    ContentPart,
    Done,
    EmbedRequest,
    ErrorEvent,
    FinishReason,
    ImagePart,
    Message,
    OutputFormat,
    Ping,
    SamplingParams,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
)
from agentport.errors import InvalidRequestError, UnsupportedContentError

# --- wire models ---------------------------------------------------------------------------


class WireOptions(Lenient):
    """Ollama's `options`; unknown keys are ignored, as Ollama does."""

    num_ctx: int | None = None  # accepted; the server chooses the context
    num_thread: int | None = None  # accepted; the server chooses the threads
    num_predict: int | None = None
    temperature: float | None = Field(None, ge=0.0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    stop: list[str] | str | None = None
    seed: int | None = None
    repeat_penalty: float | None = Field(None, ge=0.0)
    repeat_last_n: int | None = Field(None, ge=-1)


class WireFunction(Lenient):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class WireTool(Lenient):
    type: str = "function"
    function: WireFunction


class WireCallFunction(Lenient):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str | None = None


class WireToolCall(Lenient):
    id: str | None = None
    function: WireCallFunction


class WireMessage(Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class _Generation(Lenient):
    model: str = Field(min_length=1)
    format: str | dict[str, Any] | None = None
    options: WireOptions | None = None
    stream: bool | None = None  # Ollama streams unless told not to
    keep_alive: str | float | None = None
    think: bool | str | None = None


class WireChatRequest(_Generation):
    messages: list[WireMessage] = Field(default_factory=list)
    tools: list[WireTool] | None = None
    tool_choice: str | dict[str, Any] | None = None  # an extension: OpenAI's forms


class WireGenerateRequest(_Generation):
    prompt: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool | None = None
    suffix: str | None = None
    images: list[str] | None = None


class WireEmbedRequest(Lenient):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(default_factory=list)
    truncate: bool | None = None  # default: true
    keep_alive: str | float | None = None
    dimensions: int | None = Field(None, ge=1)


class WireEmbeddingsRequest(Lenient):
    model: str = Field(min_length=1)
    prompt: str = ""
    keep_alive: str | float | None = None


# --- request -> core ---------------------------------------------------------------------


def decode_chat(body: object) -> ChatRequest:
    """An /api/chat body; no messages means "load (or unload) the model" (see `is_load_only`)."""
    wire: WireChatRequest = validate(WireChatRequest, body)  # type: ignore[assignment]
    request = _decode_generation(wire)
    request.messages = _messages(wire.messages)
    request.tools = [_tool(t) for t in wire.tools or []]
    request.tool_choice = decode_tool_choice(wire.tool_choice, request.tools)
    return request


def decode_generate(body: object) -> ChatRequest:
    """An /api/generate body: a rendered [system, user] pair, or the prompt as is with `raw`."""
    wire: WireGenerateRequest = validate(WireGenerateRequest, body)  # type: ignore[assignment]
    if wire.template:
        raise InvalidRequestError("custom templates are not supported", "template")
    request = _decode_generation(wire)
    prompt = wire.prompt or ""
    if wire.images and wire.raw:
        raise UnsupportedContentError("images are not supported with raw prompts", "images")
    if wire.suffix is not None or wire.raw:
        request.prompt = prompt if prompt or wire.suffix else None
        request.suffix = wire.suffix
    elif prompt or wire.images:
        request.messages = _generate_messages(wire.system, prompt, wire.images or [])
    return request


def is_load_only(request: ChatRequest) -> bool:
    """Ollama's special case: nothing to generate from; the client only (un)loads the model."""
    return not request.messages and request.prompt is None


def _decode_generation(wire: _Generation) -> ChatRequest:
    return ChatRequest(
        model=wire.model,
        messages=[],
        sampling=_sampling(wire.options or WireOptions()),
        thinking=_think(wire.think),
        stream=wire.stream is not False,
        output_format=_format(wire.format),
        keep_alive=wire.keep_alive,
    )


def _generate_messages(system: str | None, prompt: str, images: list[str]) -> list[Message]:
    messages = [Message(role="system", content=[TextPart(system)])] if system else []
    parts: list[ContentPart] = [ImagePart(media_type="", data=i) for i in images]
    parts.append(TextPart(prompt))
    messages.append(Message(role="user", content=parts))
    return messages


def _sampling(options: WireOptions) -> SamplingParams:
    params = SamplingParams()
    for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n"):
        value = getattr(options, name)
        if value is not None:
            setattr(params, name, value)
    params.seed = options.seed
    if options.num_predict is not None and options.num_predict > 0:
        params.max_tokens = options.num_predict  # -1 (unlimited) and -2 (fill the context)
    if options.stop:
        params.stop = [options.stop] if isinstance(options.stop, str) else list(options.stop)
    return params


def _think(think: bool | str | None) -> bool | None:
    """`think` is a bool, or an effort level ("low", "medium", "high") meaning on."""
    if isinstance(think, str):
        return think.strip().lower() not in ("", "false", "none", "off")
    return think


def _format(value: str | dict[str, Any] | None) -> OutputFormat | None:
    if value is None or value == "":
        return None
    if value == "json":
        return OutputFormat(None)
    if isinstance(value, dict):
        return OutputFormat(value)
    raise InvalidRequestError(
        f"format: expected \"json\" or a JSON schema object, got '{value[:32]}'", "format"
    )


def _tool(tool: WireTool) -> ToolSpec:
    function = tool.function
    schema = function.parameters or {"type": "object", "properties": {}}
    return ToolSpec(name=function.name, description=function.description or "", input_schema=schema)


def _messages(wire: list[WireMessage]) -> list[Message]:
    messages: list[Message] = []
    call_ids: dict[str, list[str]] = {}  # tool name -> ids of the latest assistant's calls
    for index, message in enumerate(wire):
        if message.role == "tool":
            part = _tool_result(message, call_ids)
            if messages and _is_tool_results(messages[-1]):
                messages[-1].content.append(part)
            else:
                messages.append(Message(role="user", content=[part]))
            continue
        parts = _parts(message, index)
        if message.role == "assistant":
            call_ids = _ids_by_name(parts)
        messages.append(Message(role=message.role, content=parts))
    return messages


def _is_tool_results(message: Message) -> bool:
    return message.role == "user" and all(isinstance(p, ToolResultPart) for p in message.content)


def _parts(message: WireMessage, index: int) -> list[ContentPart]:
    parts: list[ContentPart] = []
    if message.thinking:
        parts.append(ThinkingPart(message.thinking))
    parts.extend(ImagePart(media_type="", data=image) for image in message.images or [])
    if message.content:
        parts.append(TextPart(message.content))
    for number, call in enumerate(message.tool_calls or []):
        parts.append(_tool_use(call, index, number))
    if not parts:
        parts.append(TextPart(""))
    return parts


def _tool_use(call: WireToolCall, index: int, number: int) -> ToolUsePart:
    where = f"messages.{index}.tool_calls.{number}"
    arguments = call.function.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise InvalidRequestError(f"{where}.function.arguments: invalid JSON", where) from exc
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"{where}.function.arguments: expected an object", where)
    call_id = call.id or f"call_{index}_{number}"
    return ToolUsePart(id=call_id, name=call.function.name, input=arguments)


def _ids_by_name(parts: list[ContentPart]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for part in parts:
        if isinstance(part, ToolUsePart):
            ids.setdefault(part.name, []).append(part.id)
    return ids


def _tool_result(message: WireMessage, call_ids: dict[str, list[str]]) -> ToolResultPart:
    """A `tool` message; without `tool_call_id`, the earlier call of that name is meant."""
    name = message.tool_name or ""
    call_id = message.tool_call_id
    if not call_id:
        pending = call_ids.get(name) or next((v for v in call_ids.values() if v), [])
        call_id = pending.pop(0) if pending else ""
    content: list[ContentPart] = [TextPart(message.content or "")]
    content.extend(ImagePart(media_type="", data=image) for image in message.images or [])
    return ToolResultPart(tool_use_id=call_id, content=content, name=name)


def decode_embed(body: object) -> tuple[EmbedRequest, int | None]:
    """An /api/embed body -> (request, dimensions to keep or None)."""
    wire: WireEmbedRequest = validate(WireEmbedRequest, body)  # type: ignore[assignment]
    inputs = [wire.input] if isinstance(wire.input, str) else list(wire.input)
    inputs = [text for text in inputs if text]
    request = EmbedRequest(
        model=wire.model,
        inputs=inputs,
        normalize=True,
        truncate=wire.truncate is not False,
        keep_alive=wire.keep_alive,
    )
    return request, wire.dimensions


def decode_embeddings(body: object) -> EmbedRequest:
    """The older /api/embeddings: one prompt, a vector that is not normalized."""
    wire: WireEmbeddingsRequest = validate(WireEmbeddingsRequest, body)  # type: ignore[assignment]
    inputs = [wire.prompt] if wire.prompt else []
    return EmbedRequest(
        model=wire.model, inputs=inputs, normalize=False, truncate=True, keep_alive=wire.keep_alive
    )


# --- core -> wire ------------------------------------------------------------------------

DONE_REASONS = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.TOOL_CALLS: "stop",
    FinishReason.CANCELLED: "stop",
}


def iso_time(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso_time(time.time()) or ""


def nanoseconds(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def final_stats(done: Done) -> dict[str, Any]:
    """The fields of Ollama's last line: why it stopped, counts and nanosecond durations."""
    usage, timings = done.usage, done.timings
    return {
        "done_reason": DONE_REASONS[done.finish_reason],
        "total_duration": nanoseconds(timings.total),
        "load_duration": nanoseconds(timings.load),
        "prompt_eval_count": max(0, usage.input_tokens - usage.cached_tokens),
        "prompt_eval_duration": nanoseconds(timings.prompt_eval),
        "eval_count": usage.output_tokens,
        "eval_duration": nanoseconds(timings.eval),
    }


def tool_call(index: int, call_id: str, name: str, arguments_text: str) -> dict[str, Any]:
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except ValueError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    function = {"index": index, "name": name, "arguments": arguments}
    return {"id": "call_" + call_id, "function": function}


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


class _CallAssembler:
    """ToolCallStart / Delta / End -> whole Ollama tool calls."""

    def __init__(self) -> None:
        self.open: dict[int, tuple[str, str, list[str]]] = {}

    def add(self, event: StreamEvent) -> dict[str, Any] | None:
        if isinstance(event, ToolCallStart):
            self.open[event.index] = (event.id, event.name, [])
        elif isinstance(event, ToolCallDelta) and event.index in self.open:
            self.open[event.index][2].append(event.arguments)
        elif isinstance(event, ToolCallEnd) and event.index in self.open:
            call_id, name, pieces = self.open.pop(event.index)
            return tool_call(event.index, call_id, name, "".join(pieces))
        return None


class _StreamEncoder:
    """Core events -> NDJSON lines; subclasses say where text, thinking and calls go."""

    def __init__(self, model: str, clock: Callable[[], str] = now_iso) -> None:
        self.model = model
        self.clock = clock
        self.calls = _CallAssembler()
        self.text: list[str] = []
        self.thinking: list[str] = []

    def body(self, text: str, thinking: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def encode_batch(self, batch: list[StreamEvent]) -> str:
        lines = [self._encode(event) for event in batch]
        lines.append(self._flush())
        return "".join(lines)

    def _encode(self, event: StreamEvent) -> str:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            return ""
        if isinstance(event, ThinkingDelta):
            out = self._flush() if self.text else ""
            self.thinking.append(event.text)
            return out
        if isinstance(event, Ping):
            return self._chunk("", "", [])
        if isinstance(event, (ToolCallStart, ToolCallDelta, ToolCallEnd)):
            call = self.calls.add(event)
            return self._flush() + self._chunk("", "", [call]) if call else ""
        if isinstance(event, Done):
            return self._flush() + self._done(event)
        if isinstance(event, ErrorEvent):
            return self._flush() + _line({"error": event.error.message})
        return ""  # PromptStart: Ollama sends nothing before the first token

    def _flush(self) -> str:
        if not self.text and not self.thinking:
            return ""
        text, thinking = "".join(self.text), "".join(self.thinking)
        self.text, self.thinking = [], []
        return self._chunk(text, thinking, [])

    def _chunk(self, text: str, thinking: str, calls: list[dict[str, Any]]) -> str:
        head = {"model": self.model, "created_at": self.clock()}
        return _line(head | self.body(text, thinking, calls) | {"done": False})

    def _done(self, done: Done) -> str:
        head = {"model": self.model, "created_at": self.clock()}
        return _line(head | self.body("", "", []) | {"done": True} | final_stats(done))


def chat_message(text: str, thinking: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"message": message}


def generate_body(text: str, thinking: str) -> dict[str, Any]:
    body: dict[str, Any] = {"response": text}
    if thinking:
        body["thinking"] = thinking
    return body


class ChatStreamEncoder(_StreamEncoder):
    """/api/chat: `message` objects."""

    def body(self, text: str, thinking: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
        return chat_message(text, thinking, calls)


class GenerateStreamEncoder(_StreamEncoder):
    """/api/generate: `response` text; tool calls have no place here and are dropped."""

    def body(self, text: str, thinking: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
        return generate_body(text, thinking)

    def _chunk(self, text: str, thinking: str, calls: list[dict[str, Any]]) -> str:
        if calls and not text and not thinking:
            return ""
        return super()._chunk(text, thinking, calls)


class _Builder:
    """Core events -> one non-streaming answer."""

    def __init__(self, model: str, clock: Callable[[], str] = now_iso) -> None:
        self.model = model
        self.clock = clock
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.assembler = _CallAssembler()

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            self.thinking.append(event.text)
        elif isinstance(event, (ToolCallStart, ToolCallDelta, ToolCallEnd)):
            call = self.assembler.add(event)
            if call is not None:
                self.calls.append(call)

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def build(self, done: Done) -> dict[str, Any]:
        head = {"model": self.model, "created_at": self.clock()}
        return head | self.body() | {"done": True} | final_stats(done)


class ChatBuilder(_Builder):
    def body(self) -> dict[str, Any]:
        return chat_message("".join(self.text), "".join(self.thinking), self.calls)


class GenerateBuilder(_Builder):
    def body(self) -> dict[str, Any]:
        return generate_body("".join(self.text), "".join(self.thinking))


def load_response(model: str, endpoint: Literal["chat", "generate"], reason: str) -> dict:
    """The answer to a request with nothing to generate: `reason` is "load" or "unload"."""
    body = chat_message("", "", []) if endpoint == "chat" else generate_body("", "")
    head = {"model": model, "created_at": now_iso()}
    return head | body | {"done": True, "done_reason": reason}


# --- embeddings --------------------------------------------------------------------------


def shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """Keep the first `dimensions` values and normalize again (Matryoshka-style truncation)."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


def embed_response(
    model: str, vectors: list[list[float]], tokens: int, total: float, load: float
) -> dict[str, Any]:
    return {
        "model": model,
        "embeddings": [list(v) for v in vectors],
        "total_duration": nanoseconds(total),
        "load_duration": nanoseconds(load),
        "prompt_eval_count": tokens,
    }


# --- codecs ----------------------------------------------------------------------------------


def _decode_chat_codec(body: object, headers: Mapping[str, str]) -> tuple[ChatRequest, None]:
    return decode_chat(body), None


def _decode_generate_codec(body: object, headers: Mapping[str, str]) -> tuple[ChatRequest, None]:
    return decode_generate(body), None


CHAT: ChatCodec[None] = ChatCodec(
    framing="ndjson",
    decode=_decode_chat_codec,
    stream_encoder=lambda chat, _: ChatStreamEncoder(chat.model),
    builder=lambda chat, _: ChatBuilder(chat.model),
    loads_only=is_load_only,
    load_answer=lambda chat, reason: load_response(chat.model, "chat", reason),
)
GENERATE: ChatCodec[None] = ChatCodec(
    framing="ndjson",
    decode=_decode_generate_codec,
    stream_encoder=lambda chat, _: GenerateStreamEncoder(chat.model),
    builder=lambda chat, _: GenerateBuilder(chat.model),
    loads_only=is_load_only,
    load_answer=lambda chat, reason: load_response(chat.model, "generate", reason),
)
