"""The OpenAI API (chat completions, completions, models, embeddings): wire models, request ->
core, core events -> SSE chunks / JSON.

Accepted and honoured: system and developer messages anywhere, user content parts (text,
image_url), assistant `tool_calls` and `reasoning_content`, tool messages, function tools,
`tool_choice`, `response_format` (json_object, json_schema), `max_tokens` /
`max_completion_tokens`, `stop`, `seed`, `temperature`, `top_p`, `stream_options`,
`prompt_cache_key` (the cache-affinity key), `reasoning_effort` ("none" turns thinking off, any
other value on), and the llama-server extensions `top_k`, `min_p`, `repeat_penalty`.

Accepted and not acted on: `frequency_penalty` and `presence_penalty` (their additive
semantics differ from llama.cpp's multiplicative repeat penalty, so they are not mapped; use
`repeat_penalty`), `parallel_tool_calls` (the model may still make several calls), `user`,
`metadata`, `store`, an empty `logit_bias`.

Refused with a 400 naming the parameter: `n` > 1, `logprobs`, `top_logprobs`, a non-empty
`logit_bias`, `audio`, `modalities` other than text, `echo`, `best_of` > 1, token-id inputs,
embedding `dimensions`.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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
    PromptStart,
    SamplingParams,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallStart,
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


class WireFunction(Lenient):
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    parameters: dict[str, Any] | None = None


class WireTool(Lenient):
    type: str = "function"
    function: WireFunction | None = None


class WireCallFunction(Lenient):
    name: str
    arguments: str = ""


class WireToolCall(Lenient):
    id: str
    type: str = "function"
    function: WireCallFunction


class WireMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class WireStreamOptions(Lenient):
    include_usage: bool = False


class _Sampled(Lenient):
    """Options shared by chat completions and completions."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: WireStreamOptions | None = None
    stop: str | list[str] | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = None
    n: int | None = None
    logit_bias: dict[str, float] | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    user: str | None = None
    # Extensions some local clients send (llama-server accepts the same names).
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, ge=0.0)
    ignore_eos: bool = False
    keep_alive: str | float | None = None


class ChatCompletionRequest(_Sampled):
    messages: list[WireMessage]
    tools: list[WireTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    metadata: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    reasoning_effort: str | None = None


class CompletionRequest(_Sampled):
    prompt: Any = None
    suffix: str | None = None
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None


class EmbeddingsRequest(Lenient):
    model: str = Field(min_length=1)
    input: Any = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    keep_alive: str | float | None = None


# --- request -> core: chat completions ----------------------------------------------------


@dataclass(slots=True)
class DecodedChat:
    """A decoded chat or completion request, with the stream options core does not carry."""

    request: ChatRequest
    include_usage: bool = False


def decode_chat(body: object) -> DecodedChat:
    wire: ChatCompletionRequest = validate(ChatCompletionRequest, body)  # type: ignore[assignment]
    _refuse_unsupported(wire)
    _refuse_chat_only(wire)
    tools = [_tool(t, f"tools.{i}") for i, t in enumerate(wire.tools or [])]
    request = ChatRequest(
        model=wire.model,
        messages=_messages(wire.messages),
        tools=tools,
        tool_choice=decode_tool_choice(wire.tool_choice, tools),
        sampling=_sampling(wire, wire.max_completion_tokens or wire.max_tokens),
        thinking=_thinking(wire.reasoning_effort),
        stream=wire.stream,
        session_id=wire.prompt_cache_key,
        output_format=_output_format(wire.response_format),
        keep_alive=wire.keep_alive,
    )
    return DecodedChat(request, _include_usage(wire))


def _include_usage(wire: _Sampled) -> bool:
    return bool(wire.stream and wire.stream_options and wire.stream_options.include_usage)


def _refuse_unsupported(wire: _Sampled) -> None:
    if wire.n is not None and wire.n != 1:
        raise InvalidRequestError("n: only n = 1 is supported", "n")
    if wire.logit_bias:
        raise InvalidRequestError("logit_bias: not supported", "logit_bias")


def _refuse_chat_only(wire: ChatCompletionRequest) -> None:
    if wire.logprobs:
        raise InvalidRequestError("logprobs: not supported", "logprobs")
    if wire.top_logprobs:
        raise InvalidRequestError("top_logprobs: not supported", "top_logprobs")
    if wire.audio is not None:
        raise InvalidRequestError("audio: audio output is not supported", "audio")
    if wire.modalities is not None and set(wire.modalities) - {"text"}:
        raise InvalidRequestError("modalities: only ['text'] is supported", "modalities")


def _sampling(wire: _Sampled, max_tokens: int | None) -> SamplingParams:
    params = SamplingParams(max_tokens=max_tokens, stop=_stop(wire.stop), seed=wire.seed)
    params.ignore_eos = wire.ignore_eos
    params.temperature = 1.0 if wire.temperature is None else wire.temperature
    if wire.top_p is not None:
        params.top_p = wire.top_p
    if wire.top_k is not None:
        params.top_k = wire.top_k
    if wire.min_p is not None:
        params.min_p = wire.min_p
    if wire.repeat_penalty is not None:
        params.repeat_penalty = wire.repeat_penalty
    return params


def _stop(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


def _thinking(effort: str | None) -> bool | None:
    if effort is None:
        return None
    return effort != "none"


def _messages(wire: list[WireMessage]) -> list[Message]:
    if not wire:
        raise InvalidRequestError("messages: at least one message is required", "messages")
    names: dict[str, str] = {}  # tool call id -> tool name, for the tool results
    out: list[Message] = []
    for index, message in enumerate(wire):
        where = f"messages.{index}"
        if message.role == "tool":
            _append_tool_result(out, _tool_result(message, names, where))
            continue
        decoded = _message(message, where)
        names.update((p.id, p.name) for p in decoded.content if isinstance(p, ToolUsePart))
        out.append(decoded)
    return out


def _message(message: WireMessage, where: str) -> Message:
    if message.role in ("system", "developer"):
        return Message("system", _text_parts(message.content, f"{where}.content"))
    if message.role == "user":
        return Message("user", _user_parts(message.content, f"{where}.content"))
    return _assistant(message, where)


def _append_tool_result(out: list[Message], part: ToolResultPart) -> None:
    """Consecutive tool messages become one user message holding all their results."""
    last = out[-1] if out else None
    if last and last.role == "user" and all(isinstance(p, ToolResultPart) for p in last.content):
        last.content.append(part)
    else:
        out.append(Message("user", [part]))


def _tool_result(message: WireMessage, names: dict[str, str], where: str) -> ToolResultPart:
    if not message.tool_call_id:
        raise InvalidRequestError(
            f"{where}.tool_call_id: required on a tool message", f"{where}.tool_call_id"
        )
    return ToolResultPart(
        tool_use_id=message.tool_call_id,
        content=_text_parts(message.content, f"{where}.content"),
        name=names.get(message.tool_call_id, ""),
    )


def _assistant(message: WireMessage, where: str) -> Message:
    parts: list[ContentPart] = []
    if message.reasoning_content:
        parts.append(ThinkingPart(message.reasoning_content))
    parts.extend(_text_parts(message.content, f"{where}.content"))
    for index, call in enumerate(message.tool_calls or []):
        parts.append(_tool_use(call, f"{where}.tool_calls.{index}"))
    return Message("assistant", parts)


def _tool_use(call: WireToolCall, where: str) -> ToolUsePart:
    text = call.function.arguments.strip()
    param = f"{where}.function.arguments"
    try:
        arguments = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{param}: not valid JSON ({exc})", param) from exc
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"{param}: must be a JSON object", param)
    return ToolUsePart(id=call.id, name=call.function.name, input=arguments)


def _text_parts(content: str | list[dict[str, Any]] | None, where: str) -> list[ContentPart]:
    """Content that may only hold text (system, assistant, tool messages)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[ContentPart] = []
    for index, block in enumerate(content):
        kind = block.get("type")
        if kind in ("text", "refusal") and isinstance(block.get(kind), str):
            parts.append(TextPart(block[kind]))
        else:
            param = f"{where}.{index}"
            raise InvalidRequestError(f"{param}: expected a text part, got type {kind!r}", param)
    return parts


def _user_parts(content: str | list[dict[str, Any]] | None, where: str) -> list[ContentPart]:
    if content is None:
        raise InvalidRequestError(f"{where}: a user message needs content", where)
    if isinstance(content, str):
        return [TextPart(content)]
    return [_user_part(block, f"{where}.{i}") for i, block in enumerate(content)]


def _user_part(block: dict[str, Any], where: str) -> ContentPart:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return TextPart(block["text"])
    if kind == "image_url":
        image = block.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url:
            return _image(url)
        raise InvalidRequestError(f"{where}.image_url.url: required", f"{where}.image_url")
    if kind in ("input_audio", "file"):
        raise UnsupportedContentError(f"{where}: content of type {kind!r} is not supported", where)
    raise InvalidRequestError(f"{where}.type: unknown content part type {kind!r}", where)


def _image(url: str) -> ImagePart:
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(";base64,", 1)
        return ImagePart(media_type=header, data=data)
    return ImagePart(media_type="", data=url, is_url=True)


def _tool(tool: WireTool, where: str) -> ToolSpec:
    if tool.type != "function" or tool.function is None:
        raise InvalidRequestError(
            f"{where}.type: only function tools are supported, got {tool.type!r}", where
        )
    function = tool.function
    schema = function.parameters or {"type": "object", "properties": {}}
    return ToolSpec(name=function.name, description=function.description, input_schema=schema)


def _output_format(response_format: dict[str, Any] | None) -> OutputFormat | None:
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat(None)
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format else None
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidRequestError(
                "response_format.json_schema: expected an object with a 'schema' object",
                "response_format",
            )
        return OutputFormat(spec.get("schema") or None)
    raise InvalidRequestError(
        f"response_format.type: expected text, json_object or json_schema, got {kind!r}",
        "response_format",
    )


# --- request -> core: completions and embeddings -------------------------------------------


def decode_completion(body: object) -> DecodedChat:
    wire: CompletionRequest = validate(CompletionRequest, body)  # type: ignore[assignment]
    _refuse_unsupported(wire)
    if wire.echo:
        raise InvalidRequestError("echo: not supported", "echo")
    if wire.logprobs:
        raise InvalidRequestError("logprobs: not supported", "logprobs")
    if wire.best_of is not None and wire.best_of != 1:
        raise InvalidRequestError("best_of: only best_of = 1 is supported", "best_of")
    request = ChatRequest(
        model=wire.model,
        messages=[],
        sampling=_sampling(wire, wire.max_tokens),
        stream=wire.stream,
        prompt=_prompt(wire.prompt),
        suffix=wire.suffix or None,
        keep_alive=wire.keep_alive,
    )
    return DecodedChat(request, _include_usage(wire))


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidRequestError("prompt: must not be empty", "prompt")
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        raise InvalidRequestError("prompt: only one prompt per request is supported", "prompt")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
        raise InvalidRequestError("prompt: token-id prompts are not supported; send text", "prompt")
    raise InvalidRequestError("prompt: expected a string or a list with one string", "prompt")


@dataclass(slots=True)
class DecodedEmbeddings:
    request: EmbedRequest
    encoding_format: str = "float"


def decode_embeddings(body: object) -> DecodedEmbeddings:
    wire: EmbeddingsRequest = validate(EmbeddingsRequest, body)  # type: ignore[assignment]
    if wire.dimensions is not None:
        raise InvalidRequestError("dimensions: not supported", "dimensions")
    inputs = _embedding_inputs(wire.input)
    request = EmbedRequest(wire.model, inputs, normalize=True, keep_alive=wire.keep_alive)
    return DecodedEmbeddings(request, wire.encoding_format)


def _embedding_inputs(value: Any) -> list[str]:
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequestError(
            "input: expected a string or a non-empty list of strings", "input"
        )
    if not all(isinstance(i, str) for i in inputs):
        raise InvalidRequestError("input: token-id inputs are not supported; send text", "input")
    if not all(inputs):
        raise InvalidRequestError("input: empty strings cannot be embedded", "input")
    return inputs


# --- core -> wire ------------------------------------------------------------------------

FINISH_REASONS = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.CANCELLED: "stop",
}

ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
}

DONE_FRAME = "data: [DONE]\n\n"
PING_FRAME = ": ping\n\n"


def new_id(prefix: str = "chatcmpl-") -> str:
    return prefix + uuid.uuid4().hex[:24]


def error_body(error: AgentportError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.kind, "server_error")
    param = getattr(error, "param", None)
    # OpenAI clients (Codex among them) compact the conversation on this code.
    code = "context_length_exceeded" if isinstance(error, PromptTooLongError) else None
    return {"error": {"message": error.message, "type": kind, "param": param, "code": code}}


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _ChunkStream:
    """What chat and text completion streams share: ids, framing, the usage chunk, [DONE]."""

    object_name = "chat.completion.chunk"
    text_template = '{"index": 0, "delta": {"content": %s}, "finish_reason": null}]}\n\n'

    def __init__(
        self,
        model: str,
        include_usage: bool = False,
        completion_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = completion_id or new_id()
        self.created = int(time.time()) if created is None else created
        head = {"id": self.id, "object": self.object_name, "created": self.created, "model": model}
        # Every chunk starts alike; the per-token frame is formatted, not built as a dict.
        self.head = "data: " + json.dumps(head, ensure_ascii=False)[:-1] + ', "choices": ['
        before, self.text_after = self.text_template.split("%s")
        self.text_before = self.head + before
        self.calls: dict[int, int] = {}  # core tool-call index -> wire index (chat only)

    def encode_batch(self, batch: list[StreamEvent]) -> str:
        return "".join(self.encode(event) for event in batch)

    def encode(self, event: StreamEvent) -> str:
        raise NotImplementedError

    def _chunk(self, choice: dict[str, Any]) -> str:
        return self.head + json.dumps(choice, ensure_ascii=False) + "]}\n\n"

    def _finish(self, done: Done, last_choice: dict[str, Any]) -> str:
        out = self._chunk(last_choice)
        if self.include_usage:
            out += self.head + '], "usage": ' + json.dumps(usage_dict(done.usage)) + "}\n\n"
        return out + DONE_FRAME

    def _error(self, event: ErrorEvent) -> str:
        return _data(error_body(event.error)) + DONE_FRAME


class ChatStreamEncoder(_ChunkStream):
    """Core events -> `chat.completion.chunk` SSE frames."""

    def encode(self, event: StreamEvent) -> str:
        if isinstance(event, TextDelta):
            return self.text_before + _json(event.text) + self.text_after
        if isinstance(event, PromptStart):
            return self._delta({"role": "assistant", "content": ""})
        if isinstance(event, Ping):
            return PING_FRAME
        if isinstance(event, ThinkingDelta):
            return self._delta({"reasoning_content": event.text})
        if isinstance(event, ToolCallStart):
            self.calls[event.index] = len(self.calls)
            function = {"name": event.name, "arguments": ""}
            call = {"id": "call_" + event.id, "type": "function", "function": function}
            return self._call_delta(event.index, call)
        if isinstance(event, ToolCallDelta):
            return self._call_delta(event.index, {"function": {"arguments": event.arguments}})
        if isinstance(event, Done):
            last = {"index": 0, "delta": {}, "finish_reason": FINISH_REASONS[event.finish_reason]}
            return self._finish(event, last)
        if isinstance(event, ErrorEvent):
            return self._error(event)
        return ""

    def _delta(self, delta: dict[str, Any]) -> str:
        return self._chunk({"index": 0, "delta": delta, "finish_reason": None})

    def _call_delta(self, index: int, call: dict[str, Any]) -> str:
        wire_index = self.calls.get(index, index)
        return self._delta({"tool_calls": [{"index": wire_index} | call]})


class ChatCompletionBuilder:
    """Core events -> one non-streaming `chat.completion`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            function = {"name": event.name, "arguments": ""}
            self.calls[event.index] = {
                "id": "call_" + event.id,
                "type": "function",
                "function": function,
            }
        elif isinstance(event, ToolCallDelta):
            self.calls[event.index]["function"]["arguments"] += event.arguments

    def message(self) -> dict[str, Any]:
        text = "".join(self.text)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not self.calls else None,
            "refusal": None,
        }
        if self.calls:
            message["tool_calls"] = list(self.calls.values())
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        return message

    def build(
        self, done: Done, completion_id: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": self.message(),
            "logprobs": None,
            "finish_reason": FINISH_REASONS[done.finish_reason],
        }
        return {
            "id": completion_id or new_id(),
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_dict(done.usage),
        }


class CompletionStreamEncoder(_ChunkStream):
    """Core events -> `text_completion` SSE frames. Thinking text is sent as text: a raw
    completion has no separate channel for it."""

    object_name = "text_completion"
    text_template = '{"index": 0, "text": %s, "logprobs": null, "finish_reason": null}]}\n\n'

    def encode(self, event: StreamEvent) -> str:
        if isinstance(event, TextDelta | ThinkingDelta):
            return self.text_before + _json(event.text) + self.text_after
        if isinstance(event, Ping):
            return PING_FRAME
        if isinstance(event, Done):
            reason = FINISH_REASONS[event.finish_reason]
            last = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
            return self._finish(event, last)
        if isinstance(event, ErrorEvent):
            return self._error(event)
        return ""


class CompletionBuilder:
    """Core events -> one non-streaming `text_completion`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta | ThinkingDelta):
            self.text.append(event.text)

    def build(
        self, done: Done, completion_id: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        choice = {
            "index": 0,
            "text": "".join(self.text),
            "logprobs": None,
            "finish_reason": FINISH_REASONS[done.finish_reason],
        }
        return {
            "id": completion_id or new_id("cmpl-"),
            "object": "text_completion",
            "created": int(time.time()) if created is None else created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_dict(done.usage),
        }


# --- models and embeddings ----------------------------------------------------------------


def model_object(name: str, modified: float) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(modified), "owned_by": "agentport"}


def models_list(models: list[tuple[str, float]]) -> dict[str, Any]:
    """GET /v1/models in the OpenAI shape; models as (name, modified unix time)."""
    return {"object": "list", "data": [model_object(n, m) for n, m in models]}


def embeddings_response(
    vectors: list[list[float]], model: str, n_tokens: int, encoding_format: str = "float"
) -> dict[str, Any]:
    encode = _base64_floats if encoding_format == "base64" else list
    data = [
        {"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def _base64_floats(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64-encoded, as OpenAI sends them."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# --- codecs ---------------------------------------------------------------------------------


def _decode_chat_codec(body: object, headers: Mapping[str, str]) -> tuple[ChatRequest, bool]:
    decoded = decode_chat(body)
    return decoded.request, decoded.include_usage


def _decode_completion_codec(body: object, headers: Mapping[str, str]) -> tuple[ChatRequest, bool]:
    decoded = decode_completion(body)
    return decoded.request, decoded.include_usage


CHAT_COMPLETIONS: ChatCodec[bool] = ChatCodec(
    framing="sse",
    decode=_decode_chat_codec,
    stream_encoder=lambda chat, usage: ChatStreamEncoder(chat.model, include_usage=usage),
    builder=lambda chat, _: ChatCompletionBuilder(chat.model),
)
COMPLETIONS: ChatCodec[bool] = ChatCodec(
    framing="sse",
    decode=_decode_completion_codec,
    stream_encoder=lambda chat, usage: CompletionStreamEncoder(
        chat.model, include_usage=usage, completion_id=new_id("cmpl-")
    ),
    builder=lambda chat, _: CompletionBuilder(chat.model),
)
