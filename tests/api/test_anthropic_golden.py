"""Golden Anthropic wire cases: request decoding and the SSE event sequence for text,
thinking, tool use and errors."""

from __future__ import annotations

import json

import pytest

from agentport.api import anthropic
from agentport.core import (
    Done,
    ErrorEvent,
    FinishReason,
    ImagePart,
    Ping,
    PromptStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from agentport.errors import InvalidRequestError, PromptTooLongError


def frames(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        out.append((event[7:], json.loads(data[6:])))
    return out


def encode(events) -> list[tuple[str, dict]]:
    encoder = anthropic.StreamEncoder("claude-sonnet-4-5", message_id="msg_1")
    return frames(encoder.encode_batch(events))


def shape(sequence: list[tuple[str, dict]]) -> list[str]:
    """Event names, with the block or delta type where there is one."""
    out = []
    for name, data in sequence:
        detail = data.get("content_block", data.get("delta", {})).get("type")
        out.append(f"{name}:{detail}" if detail and name.startswith("content_block") else name)
    return out


DONE = Done(FinishReason.STOP, Usage(input_tokens=10, cached_tokens=4, output_tokens=3))


def test_text_stream():
    seq = encode([PromptStart(10, "m"), Ping(), TextDelta("Hel"), TextDelta("lo"), DONE])
    assert shape(seq) == [
        "message_start",
        "ping",
        "content_block_start:text",
        "content_block_delta:text_delta",
        "content_block_delta:text_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = seq[0][1]["message"]
    assert start["model"] == "claude-sonnet-4-5" and start["content"] == []
    assert start["usage"]["input_tokens"] == 10
    delta = seq[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 6,  # the 10 prompt tokens less the 4 read from cache
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 3,
    }


def test_thinking_then_text():
    seq = encode([PromptStart(1, "m"), ThinkingDelta("hmm"), TextDelta("4"), DONE])
    assert shape(seq) == [
        "message_start",
        "content_block_start:thinking",
        "content_block_delta:thinking_delta",
        "content_block_delta:signature_delta",
        "content_block_stop",
        "content_block_start:text",
        "content_block_delta:text_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d.get("index") for _, d in seq[1:8]] == [0, 0, 0, 0, 1, 1, 1]


def test_tool_use_stream():
    done = Done(FinishReason.TOOL_CALLS, Usage(5, 0, 9))
    seq = encode(
        [
            PromptStart(5, "m"),
            TextDelta("Reading."),
            ToolCallStart(0, "abc", "Read"),
            ToolCallDelta(0, '{"path": '),
            ToolCallDelta(0, '"a.py"}'),
            ToolCallEnd(0),
            done,
        ]
    )
    assert shape(seq) == [
        "message_start",
        "content_block_start:text",
        "content_block_delta:text_delta",
        "content_block_stop",
        "content_block_start:tool_use",
        "content_block_delta:input_json_delta",
        "content_block_delta:input_json_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = seq[4][1]["content_block"]
    assert block == {"type": "tool_use", "id": "toolu_abc", "name": "Read", "input": {}}
    joined = "".join(
        d["delta"]["partial_json"]
        for n, d in seq
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(joined) == {"path": "a.py"}
    assert seq[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_error_event_ends_stream():
    seq = encode([PromptStart(5, "m"), TextDelta("x"), ErrorEvent(PromptTooLongError(9, 8))])
    assert seq[-1] == (
        "error",
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 9 tokens > 8 maximum",
            },
        },
    )


@pytest.mark.parametrize(
    "reason,wire",
    [
        (FinishReason.STOP, "end_turn"),
        (FinishReason.LENGTH, "max_tokens"),
        (FinishReason.STOP_SEQUENCE, "stop_sequence"),
        (FinishReason.TOOL_CALLS, "tool_use"),
    ],
)
def test_non_streaming_message(reason, wire):
    builder = anthropic.MessageBuilder("m")
    for event in [
        ThinkingDelta("t"),
        TextDelta("a"),
        TextDelta("b"),
        ToolCallStart(0, "x", "Bash"),
        ToolCallDelta(0, '{"cmd": "ls"}'),
        ToolCallEnd(0),
    ]:
        builder.add(event)
    message = builder.build(Done(reason, Usage(3, 1, 2)), message_id="msg_x")
    assert message["stop_reason"] == wire
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][1]["text"] == "ab"
    assert message["content"][2]["input"] == {"cmd": "ls"}
    assert message["usage"]["cache_read_input_tokens"] == 1


@pytest.mark.parametrize(
    "kind_error,status,wire_type",
    [
        (InvalidRequestError("bad"), 400, "invalid_request_error"),
        (PromptTooLongError(5, 4), 400, "invalid_request_error"),
    ],
)
def test_error_body(kind_error, status, wire_type):
    got_status, body = anthropic.error_body(kind_error)
    assert got_status == status and body["error"]["type"] == wire_type


CLAUDE_CODE_BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc;"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "...", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "file body"}],
                    "is_error": True,
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                },
            ],
        },
        {"role": "system", "content": "A mid-conversation reminder."},
    ],
    "metadata": {"user_id": '{"device_id": "d", "session_id": "s"}'},
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": []},
    "output_config": {"effort": "high"},
    "tool_choice": {"type": "auto"},
    "temperature": 1,
}


def test_decode_claude_code_body():
    request = anthropic.decode_messages(CLAUDE_CODE_BODY, session_id="sess")
    assert request.stream and request.session_id == "sess" and request.thinking is True
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "user", "system"]
    assert [t.name for t in request.tools] == ["Read"]  # server tools are not ours to run
    assert request.sampling.max_tokens == 32000
    system = request.messages[0].content
    assert [p.text for p in system] == [
        CLAUDE_CODE_BODY["system"][0]["text"],
        "You are Claude Code.",
    ]
    tool_use = request.messages[2].content[1]
    assert isinstance(tool_use, ToolUsePart) and tool_use.input == {"path": "a"}
    result, image = request.messages[3].content
    assert isinstance(result, ToolResultPart) and result.is_error
    assert result.content == [TextPart("file body")]
    assert isinstance(image, ImagePart)


@pytest.mark.parametrize(
    "body,message",
    [
        ({"model": "m", "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "at least one message"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}, "role"),
        (
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "tool"},
            },
            "tool_choice.name",
        ),
        ([1, 2], "JSON object"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "a", "input_schema": {}}],
                "tool_choice": {"type": "tool", "name": "b"},
            },
            "unknown tool",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "any"},
            },
            "at least one tool",
        ),
    ],
)
def test_bad_bodies_are_invalid_requests(body, message):
    with pytest.raises(InvalidRequestError) as caught:
        anthropic.decode_messages(body)
    assert message in caught.value.message


def test_models_page_shape():
    page = anthropic.models_page([("smollm2:135m", 0.0)])
    assert page["data"][0] == {
        "type": "model",
        "id": "smollm2:135m",
        "display_name": "smollm2:135m",
        "created_at": "1970-01-01T00:00:00Z",
    }
    assert page["has_more"] is False and page["first_id"] == "smollm2:135m"
