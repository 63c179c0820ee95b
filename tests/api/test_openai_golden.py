"""Golden OpenAI wire cases: chat, completion and embedding requests decoded to core requests,
core events encoded to the exact chunk sequences and JSON bodies, and bodies that must be
refused with a 400 naming the parameter."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from agentport.api import openai
from agentport.core import (
    Done,
    ErrorEvent,
    FinishReason,
    ImagePart,
    Message,
    OutputFormat,
    Ping,
    PromptStart,
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
from agentport.errors import InvalidRequestError, PromptTooLongError, UnsupportedContentError

USER = {"role": "user", "content": "hi"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASSISTANT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        }
    ],
}


def chat(**body):
    return openai.decode_chat({"model": "m", "messages": [USER]} | body).request


# --- decoding ------------------------------------------------------------------------------

DECODE_CASES = [
    (
        "plain user message",
        {},
        lambda r: r.messages == [Message("user", [TextPart("hi")])] and r.tools == [],
    ),
    (
        "developer and mid-conversation system become system",
        {
            "messages": [
                {"role": "developer", "content": "be brief"},
                USER,
                {"role": "system", "content": [{"type": "text", "text": "now"}]},
            ]
        },
        lambda r: (
            [m.role for m in r.messages] == ["system", "user", "system"]
            and r.messages[2].content == [TextPart("now")]
        ),
    ),
    (
        "image_url data URL and plain URL",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ],
                }
            ]
        },
        lambda r: (
            r.messages[0].content
            == [
                TextPart("look"),
                ImagePart("image/png", "AAA="),
                ImagePart("", "https://x/y.png", is_url=True),
            ]
        ),
    ),
    (
        "assistant tool call, then tool results merged into one user message",
        {
            "tools": [WEATHER],
            "messages": [
                USER,
                ASSISTANT_CALL,
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "x"}],
                },
            ],
        },
        lambda r: (
            r.messages[1]
            == Message("assistant", [ToolUsePart("call_1", "weather", {"city": "Oslo"})])
            and r.messages[2]
            == Message(
                "user",
                [
                    ToolResultPart("call_1", [TextPart("sunny")], name="weather"),
                    ToolResultPart("call_2", [TextPart("x")]),
                ],
            )
            and len(r.messages) == 3
        ),
    ),
    (
        "assistant reasoning_content becomes a thinking part",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": "4", "reasoning_content": "2+2"},
                USER,
            ]
        },
        lambda r: r.messages[1].content == [ThinkingPart("2+2"), TextPart("4")],
    ),
    (
        "function tools",
        {"tools": [WEATHER]},
        lambda r: (
            r.tools
            == [
                ToolSpec(
                    "weather",
                    "Weather for a city",
                    {"type": "object", "properties": {"city": {"type": "string"}}},
                )
            ]
            and r.tool_choice == ToolChoice()
        ),
    ),
    (
        "tool_choice none",
        {"tools": [WEATHER], "tool_choice": "none"},
        lambda r: r.tool_choice == ToolChoice("none"),
    ),
    (
        "tool_choice required",
        {"tools": [WEATHER], "tool_choice": "required"},
        lambda r: r.tool_choice == ToolChoice("any"),
    ),
    (
        "tool_choice named",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "weather"}}},
        lambda r: r.tool_choice == ToolChoice("tool", "weather"),
    ),
    (
        "response_format text",
        {"response_format": {"type": "text"}},
        lambda r: r.output_format is None,
    ),
    (
        "response_format json_object",
        {"response_format": {"type": "json_object"}},
        lambda r: r.output_format == OutputFormat(None),
    ),
    (
        "response_format json_schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            }
        },
        lambda r: r.output_format == OutputFormat({"type": "object"}),
    ),
    (
        "sampling options",
        {
            "max_tokens": 5,
            "stop": "END",
            "seed": 7,
            "temperature": 0,
            "top_p": 0.5,
            "frequency_penalty": 0.5,
            "presence_penalty": 0.1,
            "user": "u",
            "metadata": {"a": "b"},
            "parallel_tool_calls": False,
            "logit_bias": {},
            "n": 1,
            "stream": True,
            "modalities": ["text"],
        },
        lambda r: (
            (r.sampling.max_tokens, r.sampling.stop, r.sampling.seed) == (5, ["END"], 7)
            and (r.sampling.temperature, r.sampling.top_p) == (0, 0.5)
            and r.stream
        ),
    ),
    (
        "max_completion_tokens wins, stop list",
        {"max_tokens": 5, "max_completion_tokens": 9, "stop": ["a", "b"]},
        lambda r: r.sampling.max_tokens == 9 and r.sampling.stop == ["a", "b"],
    ),
    ("default temperature is OpenAI's", {}, lambda r: r.sampling.temperature == 1.0),
    (
        "prompt_cache_key and reasoning_effort",
        {"prompt_cache_key": "s1", "reasoning_effort": "none"},
        lambda r: r.session_id == "s1" and r.thinking is False,
    ),
]


@pytest.mark.parametrize("name,body,check", DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
def test_decode_chat(name, body, check):
    assert check(chat(**body))


def test_include_usage_only_when_streaming():
    options = {"stream_options": {"include_usage": True}}
    body = {"model": "m", "messages": [USER]} | options
    assert openai.decode_chat(body | {"stream": True}).include_usage
    assert not openai.decode_chat(body).include_usage


BAD_CHAT = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"messages": []}, "messages"),
    (
        {
            "messages": [
                USER,
                ASSISTANT_CALL
                | {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]},
            ]
        },
        "messages.1.tool_calls.0.function.arguments",
    ),
    (
        {
            "messages": [
                USER,
                ASSISTANT_CALL
                | {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]},
            ]
        },
        "messages.1.tool_calls.0.function.arguments",
    ),
    ({"messages": [USER, {"role": "tool", "content": "x"}]}, "messages.1.tool_call_id"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0"),
    (
        {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
        "messages.0.content.0",
    ),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0"),
    ({"tool_choice": "required"}, "tool_choice"),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}, "response_format"),
    ({"temperature": 3}, None),
    ({"messages": [{"role": "function", "content": "x"}]}, None),
]


@pytest.mark.parametrize("body,param", BAD_CHAT)
def test_bad_chat_bodies(body, param):
    with pytest.raises(InvalidRequestError) as caught:
        chat(**body)
    assert caught.value.param == param


def test_audio_input_is_unsupported_content():
    content = [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]
    with pytest.raises(UnsupportedContentError):
        chat(messages=[{"role": "user", "content": content}])


def test_body_must_be_an_object():
    with pytest.raises(InvalidRequestError):
        openai.decode_chat([1, 2])


COMPLETION_CASES = [
    ({"prompt": "def f("}, ("def f(", None, 16)),
    ({"prompt": ["def f("], "suffix": "return 1", "max_tokens": 8}, ("def f(", "return 1", 8)),
]


@pytest.mark.parametrize("body,expected", COMPLETION_CASES)
def test_decode_completion(body, expected):
    request = openai.decode_completion({"model": "m"} | body).request
    assert (request.prompt, request.suffix, request.sampling.max_tokens) == expected
    assert request.messages == []


@pytest.mark.parametrize(
    "body,param",
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": [""]}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "n": 3}, "n"),
        ({"prompt": "x", "logprobs": 2}, "logprobs"),
        ({"prompt": "x", "best_of": 2}, "best_of"),
    ],
)
def test_bad_completion_bodies(body, param):
    with pytest.raises(InvalidRequestError) as caught:
        openai.decode_completion({"model": "m"} | body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "body,inputs,encoding",
    [
        ({"input": "a"}, ["a"], "float"),
        ({"input": ["a", "b"], "encoding_format": "base64"}, ["a", "b"], "base64"),
    ],
)
def test_decode_embeddings(body, inputs, encoding):
    decoded = openai.decode_embeddings({"model": "m"} | body)
    assert decoded.request.inputs == inputs and decoded.request.normalize
    assert decoded.encoding_format == encoding


@pytest.mark.parametrize(
    "body,param",
    [
        ({"input": [1, 2]}, "input"),
        ({"input": [[1, 2]]}, "input"),
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": "a", "dimensions": 8}, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, None),
    ],
)
def test_bad_embedding_bodies(body, param):
    with pytest.raises(InvalidRequestError) as caught:
        openai.decode_embeddings({"model": "m"} | body)
    assert caught.value.param == param


# --- encoding ------------------------------------------------------------------------------

DONE = Done(FinishReason.STOP, Usage(input_tokens=10, cached_tokens=4, output_tokens=3))
USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 3,
    "total_tokens": 13,
    "prompt_tokens_details": {"cached_tokens": 4},
}
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x"}


def sse(text: str) -> list[object]:
    """Data payloads in order ("[DONE]" as a string); comment lines (pings) as ":"."""
    out: list[object] = []
    for block in text.split("\n\n")[:-1]:
        if block.startswith(":"):
            out.append(":")
        else:
            assert block.startswith("data: ")
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    assert text.endswith("\n\n")
    return out


def chat_stream(events, include_usage=False) -> list[object]:
    encoder = openai.ChatStreamEncoder(
        "gpt-x", include_usage, completion_id="chatcmpl-1", created=5
    )
    return sse(encoder.encode_batch(events))


def chunk(delta, finish=None) -> dict:
    return HEAD | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_text_stream_with_usage():
    events = [PromptStart(10, "m"), Ping(), TextDelta("Hel"), TextDelta('lo "x"'), DONE]
    assert chat_stream(events, include_usage=True) == [
        chunk({"role": "assistant", "content": ""}),
        ":",
        chunk({"content": "Hel"}),
        chunk({"content": 'lo "x"'}),
        chunk({}, "stop"),
        HEAD | {"choices": [], "usage": USAGE},
        "[DONE]",
    ]


def test_text_stream_without_usage():
    out = chat_stream([PromptStart(1, "m"), TextDelta("a"), Done(FinishReason.LENGTH)])
    assert out[-2:] == [chunk({}, "length"), "[DONE]"]


def test_tool_call_stream():
    events = [
        PromptStart(5, "m"),
        ThinkingDelta("plan"),
        ToolCallStart(0, "abc", "weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Oslo"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "def", "time"),
        ToolCallDelta(1, "{}"),
        ToolCallEnd(1),
        Done(FinishReason.TOOL_CALLS),
    ]
    first = {"id": "call_abc", "type": "function", "function": {"name": "weather", "arguments": ""}}
    second = {"id": "call_def", "type": "function", "function": {"name": "time", "arguments": ""}}
    assert chat_stream(events) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "plan"}),
        chunk({"tool_calls": [{"index": 0} | first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({"tool_calls": [{"index": 1} | second]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ]


def test_error_event_ends_stream():
    out = chat_stream([PromptStart(5, "m"), TextDelta("x"), ErrorEvent(PromptTooLongError(9, 8))])
    assert out[-2:] == [
        {
            "error": {
                "message": "prompt is too long: 9 tokens > 8 maximum",
                "type": "invalid_request_error",
                "param": None,
                "code": "context_length_exceeded",
            }
        },
        "[DONE]",
    ]


def test_model_name_with_percent_sign_is_safe():
    encoder = openai.ChatStreamEncoder("a%sb", completion_id="c", created=1)
    assert sse(encoder.encode(TextDelta("x")))[0]["model"] == "a%sb"


@pytest.mark.parametrize(
    "reason,wire",
    [
        (FinishReason.STOP, "stop"),
        (FinishReason.LENGTH, "length"),
        (FinishReason.STOP_SEQUENCE, "stop"),
        (FinishReason.TOOL_CALLS, "tool_calls"),
    ],
)
def test_finish_reasons(reason, wire):
    builder = openai.ChatCompletionBuilder("m")
    assert builder.build(Done(reason))["choices"][0]["finish_reason"] == wire


def test_non_streaming_with_tool_calls():
    builder = openai.ChatCompletionBuilder("gpt-x")
    for event in [
        PromptStart(10, "m"),
        ThinkingDelta("t"),
        ToolCallStart(0, "x", "weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, ' "Oslo"}'),
        ToolCallEnd(0),
    ]:
        builder.add(event)
    done = Done(FinishReason.TOOL_CALLS, DONE.usage)
    call = {
        "id": "call_x",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
    }
    assert builder.build(done, completion_id="chatcmpl-1", created=5) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 5,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [call],
                    "reasoning_content": "t",
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": USAGE,
    }


def test_non_streaming_text():
    builder = openai.ChatCompletionBuilder("m")
    for event in [TextDelta("a"), TextDelta("b")]:
        builder.add(event)
    body = builder.build(DONE)
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ab", "refusal": None}


def test_completion_stream():
    encoder = openai.CompletionStreamEncoder("m", True, completion_id="cmpl-1", created=5)
    out = sse(encoder.encode_batch([PromptStart(10, "m"), TextDelta("x = "), TextDelta("1"), DONE]))
    head = {"id": "cmpl-1", "object": "text_completion", "created": 5, "model": "m"}

    def choice(text, finish=None):
        return head | {
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]
        }

    assert out == [
        choice("x = "),
        choice("1"),
        choice("", "stop"),
        head | {"choices": [], "usage": USAGE},
        "[DONE]",
    ]


def test_completion_body():
    builder = openai.CompletionBuilder("m")
    builder.add(TextDelta("x = 1"))
    body = builder.build(Done(FinishReason.LENGTH, DONE.usage), completion_id="cmpl-1", created=5)
    assert body == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "m",
        "choices": [{"index": 0, "text": "x = 1", "logprobs": None, "finish_reason": "length"}],
        "usage": USAGE,
    }


def test_models_shapes():
    assert openai.models_list([("a:1", 3.5)]) == {
        "object": "list",
        "data": [{"id": "a:1", "object": "model", "created": 3, "owned_by": "agentport"}],
    }


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_response(encoding):
    body = openai.embeddings_response([[0.5, -1.0], [0.25, 2.0]], "m", 7, encoding)
    assert body["object"] == "list" and body["model"] == "m"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in body["data"]] == [0, 1]
    first = body["data"][0]["embedding"]
    if encoding == "base64":
        first = list(struct.unpack("<2f", base64.b64decode(first)))
    assert first == [0.5, -1.0]
