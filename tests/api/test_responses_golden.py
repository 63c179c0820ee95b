"""Golden OpenAI Responses wire cases: Codex-shaped request decoding, and the SSE event
sequences for text, thinking, a streamed tool call, a cut-off answer and a failure, each event
validated against the `openai` SDK's own types."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from agentport.api import responses
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
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from agentport.errors import EngineError, InvalidRequestError, PromptTooLongError

SHELL = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
    },
}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "tools": [SHELL | {"name": "spawn"}]}


def developer(text: str) -> dict:
    return {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": text}],
    }


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def codex_body(**extra) -> dict:
    """The shape Codex 0.169 sends on a first turn, trimmed."""
    body = {
        "model": "smollm2:135m",
        "stream": True,
        "input": [developer("You are Codex."), developer("<skills/>"), user("Say hello")],
        "tools": [SHELL, NAMESPACE, {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1",
        "client_metadata": {"turn_id": "t1"},
    }
    return body | extra


TOOL_TURN = [
    user("list files"),
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Listing."}],
    },
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "exec_command",
        "arguments": '{"cmd":"ls"}',
    },
    {"type": "function_call", "call_id": "call_2", "name": "exec_command", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "a.py\n"},
    {
        "type": "function_call_output",
        "call_id": "call_2",
        "output": [{"type": "input_text", "text": "done"}],
    },
    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    {"role": "system", "content": "Be brief."},
]

DECODE_CASES = [
    (
        "codex first turn",
        codex_body(),
        lambda chat: (
            [m.role for m in chat.messages] == ["system", "system", "user"]
            and chat.messages[0].text() == "You are Codex."
            and [t.name for t in chat.tools] == ["exec_command"]
            and chat.tool_choice == ToolChoice("auto")
            and chat.stream
            and chat.session_id == "session-1"
            and chat.thinking is None
        ),
    ),
    (
        "string input with instructions",
        {"model": "m", "input": "hi", "instructions": "Be nice.", "max_output_tokens": 32},
        lambda chat: (
            chat.messages
            == [Message("system", [TextPart("Be nice.")]), Message("user", [TextPart("hi")])]
            and chat.sampling.max_tokens == 32
            and not chat.stream
        ),
    ),
    (
        "tool calls merge into the assistant message, outputs into one user message",
        {"model": "m", "input": TOOL_TURN},
        lambda chat: (
            [m.role for m in chat.messages] == ["user", "assistant", "user", "system"]
            and chat.messages[1].content
            == [
                TextPart("Listing."),
                ToolUsePart("call_1", "exec_command", {"cmd": "ls"}),
                ToolUsePart("call_2", "exec_command", {}),
            ]
            and chat.messages[2].content
            == [
                ToolResultPart("call_1", [TextPart("a.py\n")], name="exec_command"),
                ToolResultPart("call_2", [TextPart("done")], name="exec_command"),
            ]
            and chat.messages[3].text() == "Be brief."
        ),
    ),
    (
        "tool_choice required",
        codex_body(tool_choice="required"),
        lambda chat: chat.tool_choice == ToolChoice("any"),
    ),
    (
        "tool_choice a named function",
        codex_body(tool_choice={"type": "function", "name": "exec_command"}),
        lambda chat: chat.tool_choice == ToolChoice("tool", "exec_command"),
    ),
    (
        "tool_choice none",
        codex_body(tool_choice="none"),
        lambda chat: chat.tool_choice == ToolChoice("none"),
    ),
    (
        "tool_choice a hosted tool: the model chooses",
        codex_body(tool_choice={"type": "web_search"}),
        lambda chat: chat.tool_choice == ToolChoice("auto"),
    ),
    (
        "allowed_tools narrows the tools",
        codex_body(
            tools=[SHELL, SHELL | {"name": "other"}],
            tool_choice={
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "other"}],
            },
        ),
        lambda chat: [t.name for t in chat.tools] == ["other"] and chat.tool_choice.mode == "any",
    ),
    (
        "json_schema text format",
        codex_body(
            text={
                "format": {
                    "type": "json_schema",
                    "name": "x",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            }
        ),
        lambda chat: chat.output_format == OutputFormat({"type": "object"}),
    ),
    (
        "json_object text format",
        codex_body(text={"format": {"type": "json_object"}}),
        lambda chat: chat.output_format == OutputFormat(None),
    ),
    (
        "plain text format, sampling",
        codex_body(text={"format": {"type": "text"}, "verbosity": "low"}, temperature=0, top_p=0.5),
        lambda chat: (
            chat.output_format is None
            and chat.sampling.temperature == 0
            and chat.sampling.top_p == 0.5
        ),
    ),
    (
        "reasoning effort turns thinking on, none turns it off",
        codex_body(reasoning={"effort": "high", "summary": "auto"}),
        lambda chat: chat.thinking is True,
    ),
    (
        "reasoning effort none",
        codex_body(reasoning={"effort": "none"}),
        lambda chat: chat.thinking is False,
    ),
    (
        "easy input messages, string content, images",
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "look"},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                        {"type": "input_image", "image_url": "https://x/y.png"},
                    ],
                },
            ],
        },
        lambda chat: (
            chat.messages[0].content == [TextPart("look")]
            and chat.messages[1].content
            == [ImagePart("image/png", "AAAA"), ImagePart("", "https://x/y.png", is_url=True)]
        ),
    ),
]


@pytest.mark.parametrize(
    "body,check", [c[1:] for c in DECODE_CASES], ids=[c[0] for c in DECODE_CASES]
)
def test_decode(body, check):
    chat, _ = responses.decode_responses(body)
    assert check(chat), chat


def test_echo_repeats_what_the_client_sent():
    _, echo = responses.decode_responses(
        codex_body(max_output_tokens=64, metadata={"k": "v"}, instructions="I")
    )
    assert [t["name"] for t in echo.tools] == ["exec_command"]
    assert echo.tool_choice == "auto" and echo.parallel_tool_calls is True
    assert echo.reasoning == {"effort": None, "summary": "auto"}
    assert echo.max_output_tokens == 64 and echo.metadata == {"k": "v"}
    assert echo.instructions == "I" and echo.prompt_cache_key == "session-1"


BAD_BODIES = [
    ("no model", {"input": "hi"}),
    ("no input", {"model": "m"}),
    ("empty input", {"model": "m", "input": []}),
    ("only developer messages", {"model": "m", "input": [developer("x")]}),
    (
        "unknown role",
        {"model": "m", "input": [{"type": "message", "role": "robot", "content": "x"}]},
    ),
    (
        "function_call without call_id",
        {"model": "m", "input": [{"type": "function_call", "name": "f"}]},
    ),
    (
        "arguments not JSON",
        {
            "model": "m",
            "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}],
        },
    ),
    ("function tool without name", codex_body(tools=[{"type": "function"}])),
    (
        "tool_choice names a missing tool",
        codex_body(tool_choice={"type": "function", "name": "nope"}),
    ),
    ("unknown tool_choice", codex_body(tool_choice="sometimes")),
    ("unknown text format", codex_body(text={"format": {"type": "xml"}})),
    ("previous_response_id", codex_body(previous_response_id="resp_1")),
    ("max_output_tokens zero", codex_body(max_output_tokens=0)),
    (
        "input_file",
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
        },
    ),
]


@pytest.mark.parametrize("body", [c[1] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_decode_rejects(body):
    with pytest.raises(InvalidRequestError):
        responses.decode_responses(body)


# --- encoding --------------------------------------------------------------------------

EVENT = TypeAdapter(ResponseStreamEvent)


def frames(text: str) -> list[dict]:
    """Parse SSE frames, check each against the SDK's event types, return the data objects."""
    out = []
    for block in text.strip().split("\n\n"):
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == event[7:]
        EVENT.validate_python(sdk_view(payload))
        out.append(payload)
    return out


def sdk_view(payload: dict) -> dict:
    """The SDK parses error codes leniently, but its Literal lacks the codes Codex acts on
    (`context_length_exceeded`, `server_is_overloaded`): validate the rest."""
    error = payload.get("response", {}).get("error")
    if not error:
        return payload
    response = payload["response"] | {"error": error | {"code": "server_error"}}
    return payload | {"response": response}


def encode(events, **body) -> list[dict]:
    _, echo = responses.decode_responses({"model": "smollm2:135m", "input": "hi"} | body)
    return frames(responses.StreamEncoder(echo, response_id="resp_1").encode_batch(events))


def detail(data: dict) -> str:
    kind = data["type"]
    item = data.get("item")
    return f"{kind}:{item['type']}" if item else kind


DONE = Done(FinishReason.STOP, Usage(input_tokens=10, cached_tokens=4, output_tokens=3))
TOOL_DONE = Done(FinishReason.TOOL_CALLS, Usage(5, 0, 9))
LENGTH = Done(FinishReason.LENGTH, Usage(5, 0, 2))

ENCODE_CASES = [
    (
        "text",
        [PromptStart(10, "m"), Ping(), TextDelta("Hel"), TextDelta("lo"), DONE],
        [
            "response.created",
            "response.in_progress",
            "response.in_progress",
            "response.output_item.added:message",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done:message",
            "response.completed",
        ],
    ),
    (
        "thinking then text",
        [PromptStart(1, "m"), ThinkingDelta("hm"), ThinkingDelta("m"), TextDelta("4"), DONE],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added:reasoning",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done:reasoning",
            "response.output_item.added:message",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done:message",
            "response.completed",
        ],
    ),
    (
        "a tool call streamed in pieces",
        [
            PromptStart(5, "m"),
            ToolCallStart(0, "abc", "exec_command"),
            ToolCallDelta(0, '{"cmd": '),
            ToolCallDelta(0, '"ls"}'),
            ToolCallEnd(0),
            TOOL_DONE,
        ],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added:function_call",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done:function_call",
            "response.completed",
        ],
    ),
    (
        "cut off by max_output_tokens",
        [PromptStart(5, "m"), TextDelta("Hel"), LENGTH],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added:message",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done:message",
            "response.completed",
        ],
    ),
    (
        "an engine error mid-stream",
        [PromptStart(5, "m"), TextDelta("Hel"), ErrorEvent(EngineError("engine failed: boom"))],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added:message",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done:message",
            "response.failed",
        ],
    ),
]


@pytest.mark.parametrize(
    "events,expected", [c[1:] for c in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES]
)
def test_encode_sequence(events, expected):
    seq = encode(events)
    assert [detail(d) for d in seq] == expected
    assert [d["sequence_number"] for d in seq] == list(range(len(seq)))
    final = seq[-1]["response"]
    Response.model_validate(final)
    assert final["id"] == "resp_1" and all(d.get("response", final)["id"] == "resp_1" for d in seq)
    assert seq[0]["response"]["status"] == "in_progress" and seq[0]["response"]["output"] == []
    added = [d["item"]["id"] for d in seq if d["type"] == "response.output_item.added"]
    assert [item["id"] for item in final["output"]] == added


def test_text_items_and_usage():
    seq = encode([PromptStart(10, "m"), TextDelta("Hel"), TextDelta("lo"), DONE])
    item_id = seq[2]["item"]["id"]
    assert item_id.startswith("msg_") and seq[2]["item"]["status"] == "in_progress"
    deltas = [d for d in seq if d["type"] == "response.output_text.delta"]
    assert [(d["item_id"], d["output_index"], d["content_index"], d["delta"]) for d in deltas] == [
        (item_id, 0, 0, "Hel"),
        (item_id, 0, 0, "lo"),
    ]
    final = seq[-1]["response"]
    assert final["status"] == "completed" and final["incomplete_details"] is None
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 13,
    }


def test_tool_call_arguments_concatenate():
    seq = encode(
        [
            PromptStart(5, "m"),
            TextDelta("Listing."),
            ToolCallStart(0, "abc", "exec_command"),
            ToolCallDelta(0, '{"cmd": '),
            ToolCallDelta(0, '"ls"}'),
            ToolCallEnd(0),
            TOOL_DONE,
        ],
        tools=[SHELL],
    )
    added = next(d for d in seq if detail(d) == "response.output_item.added:function_call")
    assert added["output_index"] == 1 and added["item"]["arguments"] == ""
    assert added["item"]["call_id"] == "call_abc" and added["item"]["id"].startswith("fc_")
    pieces = [d["delta"] for d in seq if d["type"] == "response.function_call_arguments.delta"]
    done = next(d for d in seq if d["type"] == "response.function_call_arguments.done")
    assert "".join(pieces) == done["arguments"] and json.loads(done["arguments"]) == {"cmd": "ls"}
    final = seq[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert final["tools"][0]["name"] == "exec_command"


def test_length_is_incomplete():
    final = encode([PromptStart(5, "m"), TextDelta("Hel"), LENGTH], max_output_tokens=2)[-1]
    response = final["response"]
    assert response["status"] == "incomplete" and response["max_output_tokens"] == 2
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(
    "error,code",
    [
        (EngineError("engine failed: boom"), "server_error"),
        (PromptTooLongError(9000, 8192), "context_length_exceeded"),
    ],
)
def test_error_is_failed(error, code):
    seq = encode([PromptStart(5, "m"), ErrorEvent(error)])
    response = seq[-1]["response"]
    assert seq[-1]["type"] == "response.failed" and response["status"] == "failed"
    assert response["error"] == {"code": code, "message": error.message}


def test_error_before_prompt_start_still_opens_the_response():
    seq = encode([ErrorEvent(EngineError("boom"))])
    assert [d["type"] for d in seq] == ["response.created", "response.failed"]


def test_builder_matches_the_stream():
    _, echo = responses.decode_responses({"model": "m", "input": "hi", "tools": [SHELL]})
    events = [
        PromptStart(5, "m"),
        ThinkingDelta("hm"),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallStart(0, "abc", "exec_command"),
        ToolCallDelta(0, '{"cmd": "ls"}'),
        ToolCallEnd(0),
    ]
    builder = responses.ResponseBuilder(echo, response_id="resp_2")
    for event in events:
        builder.add(event)
    built = builder.build(TOOL_DONE)
    Response.model_validate(built)
    streamed = frames(responses.StreamEncoder(echo).encode_batch([*events, TOOL_DONE]))[-1]
    strip = [{k: v for k, v in item.items() if k != "id"} for item in built["output"]]
    assert strip == [
        {k: v for k, v in item.items() if k != "id"} for item in streamed["response"]["output"]
    ]
    assert built["usage"]["output_tokens"] == 9 and built["status"] == "completed"
