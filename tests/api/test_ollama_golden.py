"""Golden Ollama wire cases: /api/chat, /api/generate and /api/embed bodies decoded to core
requests, and event batches encoded to the exact NDJSON lines and JSON answers."""

from __future__ import annotations

import json

import pytest

from agentport.api import ollama, ollama_models
from agentport.core import (
    ChatRequest,
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
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Timings,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Usage,
)
from agentport.errors import (
    InvalidRequestError,
    PromptTooLongError,
    UnsupportedContentError,
)

M = "smollm2:135m"
USER = {"role": "user", "content": "hi"}


def user(text: str = "hi", *extra) -> Message:
    return Message(role="user", content=[*extra, TextPart(text)])


def chat(**fields) -> ChatRequest:
    """The decoded request with Ollama's defaults (`stream` true)."""
    fields.setdefault("messages", [user()])
    fields.setdefault("stream", True)
    return ChatRequest(model=M, **fields)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}

CHAT_CASES = [
    ("minimal", {"messages": [USER]}, chat()),
    ("no stream", {"messages": [USER], "stream": False}, chat(stream=False)),
    ("stream null streams", {"messages": [USER], "stream": None}, chat()),
    ("empty messages load", {}, chat(messages=[])),
    (
        "options",
        {
            "messages": [USER],
            "options": {
                "num_ctx": 32768,
                "num_thread": 4,
                "num_predict": 16,
                "temperature": 0,
                "top_k": 5,
                "top_p": 0.5,
                "min_p": 0.1,
                "stop": ["END"],
                "seed": 7,
                "repeat_penalty": 1.2,
                "repeat_last_n": 32,
                "mirostat": 0,
            },
        },
        chat(
            sampling=SamplingParams(
                temperature=0.0,
                top_k=5,
                top_p=0.5,
                min_p=0.1,
                stop=["END"],
                seed=7,
                repeat_penalty=1.2,
                repeat_last_n=32,
                max_tokens=16,
            )
        ),
    ),
    ("num_predict -1", {"messages": [USER], "options": {"num_predict": -1}}, chat()),
    ("num_predict -2", {"messages": [USER], "options": {"num_predict": -2}}, chat()),
    ("format json", {"messages": [USER], "format": "json"}, chat(output_format=OutputFormat())),
    (
        "format schema",
        {"messages": [USER], "format": SCHEMA},
        chat(output_format=OutputFormat(SCHEMA)),
    ),
    ("format empty", {"messages": [USER], "format": ""}, chat()),
    ("think", {"messages": [USER], "think": True}, chat(thinking=True)),
    ("think off", {"messages": [USER], "think": False}, chat(thinking=False)),
    ("think level", {"messages": [USER], "think": "high"}, chat(thinking=True)),
    ("keep_alive text", {"messages": [USER], "keep_alive": "10m"}, chat(keep_alive="10m")),
    ("keep_alive zero", {"messages": [USER], "keep_alive": 0}, chat(keep_alive=0)),
    (
        "tools",
        {"messages": [USER], "tools": [WEATHER]},
        chat(
            tools=[ToolSpec("get_weather", "Weather in a city", WEATHER["function"]["parameters"])]
        ),
    ),
    (
        "images",
        {"messages": [{"role": "user", "content": "what is it?", "images": ["iVBOR"]}]},
        chat(messages=[user("what is it?", ImagePart("", "iVBOR"))]),
    ),
    (
        "tool round trip",
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                USER,
                {
                    "role": "assistant",
                    "content": "",
                    "thinking": "need weather",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                        {"id": "c2", "function": {"name": "get_time", "arguments": '{"tz": 1}'}},
                    ],
                },
                {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"},
                {"role": "user", "content": "thanks"},
            ]
        },
        chat(
            messages=[
                Message("system", [TextPart("be brief")]),
                user(),
                Message(
                    "assistant",
                    [
                        ThinkingPart("need weather"),
                        ToolUsePart("call_2_0", "get_weather", {"city": "Oslo"}),
                        ToolUsePart("c2", "get_time", {"tz": 1}),
                    ],
                ),
                Message(
                    "user",
                    [
                        ToolResultPart("call_2_0", [TextPart("sunny")], name="get_weather"),
                        ToolResultPart("c2", [TextPart("noon")]),
                    ],
                ),
                user("thanks"),
            ]
        ),
    ),
]


@pytest.mark.parametrize(
    "body,expected", [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES]
)
def test_decode_chat(body, expected):
    assert ollama.decode_chat({"model": M} | body) == expected


GENERATE_CASES = [
    ("prompt", {"prompt": "hi"}, chat()),
    (
        "system",
        {"prompt": "hi", "system": "be brief", "stream": False},
        chat(messages=[Message("system", [TextPart("be brief")]), user()], stream=False),
    ),
    (
        "raw",
        {"prompt": "<s>hi", "raw": True, "system": "ignored"},
        chat(messages=[], prompt="<s>hi"),
    ),
    (
        "suffix",
        {"prompt": "def f(", "suffix": "\n"},
        chat(messages=[], prompt="def f(", suffix="\n"),
    ),
    ("suffix only", {"suffix": "x"}, chat(messages=[], prompt="", suffix="x")),
    ("empty prompt load", {"prompt": ""}, chat(messages=[])),
    ("no prompt unload", {"keep_alive": 0}, chat(messages=[], keep_alive=0)),
    ("raw empty load", {"prompt": "", "raw": True}, chat(messages=[])),
    ("empty template", {"prompt": "hi", "template": ""}, chat()),
    (
        "images",
        {"prompt": "hi", "images": ["AA"]},
        chat(messages=[user("hi", ImagePart("", "AA"))]),
    ),
    (
        "format and options",
        {"prompt": "hi", "format": "json", "options": {"num_predict": 3}},
        chat(output_format=OutputFormat(), sampling=SamplingParams(max_tokens=3)),
    ),
]


@pytest.mark.parametrize(
    "body,expected", [c[1:] for c in GENERATE_CASES], ids=[c[0] for c in GENERATE_CASES]
)
def test_decode_generate(body, expected):
    assert ollama.decode_generate({"model": M} | body) == expected


@pytest.mark.parametrize(
    "decode,body,error,match",
    [
        (ollama.decode_chat, {"messages": [USER]}, InvalidRequestError, "model"),
        (
            ollama.decode_chat,
            {"model": M, "messages": [{"role": "bot"}]},
            InvalidRequestError,
            "role",
        ),
        (ollama.decode_chat, {"model": M, "format": "yaml"}, InvalidRequestError, "format"),
        (
            ollama.decode_chat,
            {"model": M, "options": {"temperature": "hot"}},
            InvalidRequestError,
            "temperature",
        ),
        (
            ollama.decode_chat,
            {"model": M, "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
            InvalidRequestError,
            "name",
        ),
        (
            ollama.decode_chat,
            {
                "model": M,
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}],
                    }
                ],
            },
            InvalidRequestError,
            "arguments",
        ),
        (ollama.decode_chat, [USER], InvalidRequestError, "JSON object"),
        (
            ollama.decode_generate,
            {"model": M, "prompt": "x", "template": "{{ .Prompt }}"},
            InvalidRequestError,
            "custom templates",
        ),
        (
            ollama.decode_generate,
            {"model": M, "prompt": "x", "raw": True, "images": ["AA"]},
            UnsupportedContentError,
            "images",
        ),
    ],
)
def test_decode_errors(decode, body, error, match):
    with pytest.raises(error, match=match):
        decode(body)


@pytest.mark.parametrize(
    "body,expected,dimensions",
    [
        ({"input": "a"}, EmbedRequest(M, ["a"]), None),
        (
            {"input": ["a", "b"], "truncate": False},
            EmbedRequest(M, ["a", "b"], truncate=False),
            None,
        ),
        ({"input": [], "keep_alive": "1m"}, EmbedRequest(M, [], keep_alive="1m"), None),
        ({"input": "a", "dimensions": 8}, EmbedRequest(M, ["a"]), 8),
        ({"input": "a", "truncate": None}, EmbedRequest(M, ["a"]), None),
    ],
)
def test_decode_embed(body, expected, dimensions):
    assert ollama.decode_embed({"model": M} | body) == (expected, dimensions)


def test_decode_embeddings_is_not_normalized():
    got = ollama.decode_embeddings({"model": M, "prompt": "a"})
    assert got == EmbedRequest(M, ["a"], normalize=False)


def test_shorten_renormalizes():
    assert ollama.shorten([3.0, 4.0, 5.0], 2) == [0.6, 0.8]
    assert ollama.shorten([1.0, 0.0], None) == [1.0, 0.0]


# --- encoding ------------------------------------------------------------------------------

T = "2025-01-01T00:00:00Z"
DONE = Done(
    FinishReason.STOP,
    Usage(input_tokens=10, cached_tokens=4, output_tokens=3),
    Timings(load=0.5, prompt_eval=0.25, eval=0.125, total=1.5),
)
STATS = {
    "done_reason": "stop",
    "total_duration": 1_500_000_000,
    "load_duration": 500_000_000,
    "prompt_eval_count": 6,
    "prompt_eval_duration": 250_000_000,
    "eval_count": 3,
    "eval_duration": 125_000_000,
}
HEAD = {"model": M, "created_at": T}


def reply(content: str = "", **extra) -> dict:
    return HEAD | {"message": {"role": "assistant", "content": content, **extra}, "done": False}


def final(**stats) -> dict:
    return HEAD | {"message": {"role": "assistant", "content": ""}, "done": True} | STATS | stats


WEATHER_CALL = {
    "id": "call_abc",
    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}},
}
CALL_EVENTS = [
    ToolCallStart(0, "abc", "get_weather"),
    ToolCallDelta(0, '{"city": '),
    ToolCallDelta(0, '"Oslo"}'),
    ToolCallEnd(0),
]

CHAT_STREAM_CASES = [
    (
        "text",
        [[PromptStart(10, M)], [TextDelta("Hel"), TextDelta("lo")], [TextDelta("!"), DONE]],
        [reply("Hello"), reply("!"), final()],
    ),
    ("ping keeps the line alive", [[Ping()], [DONE]], [reply(), final()]),
    (
        "thinking then text",
        [[ThinkingDelta("hmm"), ThinkingDelta("...")], [TextDelta("4")], [DONE]],
        [reply(thinking="hmm..."), reply("4"), final()],
    ),
    (
        "text then thinking in one batch keeps the order",
        [[TextDelta("a"), ThinkingDelta("b"), TextDelta("c")], [DONE]],
        [reply("a"), reply("c", thinking="b"), final()],
    ),
    (
        "tool call",
        [
            [TextDelta("Checking.")],
            CALL_EVENTS[:2],
            CALL_EVENTS[2:],
            [Done(FinishReason.TOOL_CALLS, DONE.usage, DONE.timings)],
        ],
        [reply("Checking."), reply(tool_calls=[WEATHER_CALL]), final()],
    ),
    (
        "length",
        [[TextDelta("a"), Done(FinishReason.LENGTH, DONE.usage, DONE.timings)]],
        [reply("a"), final(done_reason="length")],
    ),
    (
        "stop sequence",
        [[Done(FinishReason.STOP_SEQUENCE, DONE.usage, DONE.timings, "END")]],
        [final()],
    ),
    (
        "error mid-stream",
        [[TextDelta("x")], [ErrorEvent(PromptTooLongError(9, 8))]],
        [reply("x"), {"error": "prompt is too long: 9 tokens > 8 maximum"}],
    ),
]


def lines(text: str) -> list[dict]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(
    "batches,expected", [c[1:] for c in CHAT_STREAM_CASES], ids=[c[0] for c in CHAT_STREAM_CASES]
)
def test_chat_stream(batches, expected):
    encoder = ollama.ChatStreamEncoder(M, clock=lambda: T)
    out = "".join(encoder.encode_batch(batch) for batch in batches)
    assert lines(out) == expected


def test_stream_lines_are_exact_json():
    encoder = ollama.ChatStreamEncoder(M, clock=lambda: T)
    assert encoder.encode_batch([TextDelta("é")]) == (
        '{"model": "smollm2:135m", "created_at": "2025-01-01T00:00:00Z", '
        '"message": {"role": "assistant", "content": "é"}, "done": false}\n'
    )
    assert encoder.encode_batch([PromptStart(3, M)]) == ""


def generated(response: str = "", **extra) -> dict:
    return HEAD | {"response": response, **extra, "done": False}


GENERATE_STREAM_CASES = [
    (
        "text",
        [[TextDelta("a"), TextDelta("b")], [DONE]],
        [generated("ab"), HEAD | {"response": "", "done": True} | STATS],
    ),
    (
        "thinking",
        [[ThinkingDelta("t")], [TextDelta("x"), DONE]],
        [generated(thinking="t"), generated("x"), HEAD | {"response": "", "done": True} | STATS],
    ),
    (
        "a tool call has no place in generate",
        [CALL_EVENTS, [DONE]],
        [HEAD | {"response": "", "done": True} | STATS],
    ),
]


@pytest.mark.parametrize(
    "batches,expected",
    [c[1:] for c in GENERATE_STREAM_CASES],
    ids=[c[0] for c in GENERATE_STREAM_CASES],
)
def test_generate_stream(batches, expected):
    encoder = ollama.GenerateStreamEncoder(M, clock=lambda: T)
    out = "".join(encoder.encode_batch(batch) for batch in batches)
    assert lines(out) == expected


EVENTS = [ThinkingDelta("t"), TextDelta("a"), TextDelta("b"), *CALL_EVENTS]


def test_chat_builder():
    builder = ollama.ChatBuilder(M, clock=lambda: T)
    for event in EVENTS:
        builder.add(event)
    message = {"role": "assistant", "content": "ab", "thinking": "t", "tool_calls": [WEATHER_CALL]}
    assert builder.build(DONE) == HEAD | {"message": message, "done": True} | STATS


def test_generate_builder():
    builder = ollama.GenerateBuilder(M, clock=lambda: T)
    for event in EVENTS:
        builder.add(event)
    assert builder.build(DONE) == HEAD | {"response": "ab", "thinking": "t", "done": True} | STATS


@pytest.mark.parametrize(
    "arguments,expected",
    [('{"a": 1}', {"a": 1}), ("", {}), ("{truncated", {}), ("[1]", {})],
)
def test_tool_call_arguments_are_always_an_object(arguments, expected):
    assert ollama.tool_call(1, "x", "f", arguments) == {
        "id": "call_x",
        "function": {"index": 1, "name": "f", "arguments": expected},
    }


@pytest.mark.parametrize("endpoint,key", [("chat", "message"), ("generate", "response")])
@pytest.mark.parametrize("reason", ["load", "unload"])
def test_load_response(endpoint, key, reason):
    body = ollama.load_response(M, endpoint, reason)
    assert body["done"] is True and body["done_reason"] == reason and key in body


def test_final_stats_counts_only_evaluated_prompt_tokens():
    done = Done(FinishReason.STOP, Usage(input_tokens=100, cached_tokens=100, output_tokens=1))
    assert ollama.final_stats(done)["prompt_eval_count"] == 0


@pytest.mark.parametrize(
    "parameters,text",
    [
        (None, ""),
        ({"temperature": 0.7}, "temperature" + " " * 20 + "0.7"),
        ({"stop": ["<a>", "<b>"]}, "stop" + " " * 27 + '"<a>"\nstop' + " " * 27 + '"<b>"'),
    ],
)
def test_parameters_text(parameters, text):
    assert ollama_models.parameters_text(parameters) == text
