"""The Hermes tool-call / thinking parser, fed token by token and in one piece."""

from __future__ import annotations

import json

import pytest

from agentport.chat.parsers import family_for, parser_for
from agentport.core import TextDelta, ThinkingDelta, ToolCallDelta, ToolCallEnd, ToolCallStart

TOOLS = ["Read", "Bash", "Edit"]


def run(chunks: list[str], tools: list[str] = TOOLS) -> tuple[str, str, list[tuple[str, dict]]]:
    parser = parser_for("hermes", tools)
    events = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.finish())
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    calls, args = [], {}
    for event in events:
        if isinstance(event, ToolCallStart):
            calls.append(event.name)
            args[event.index] = ""
        elif isinstance(event, ToolCallDelta):
            args[event.index] += event.arguments
        elif isinstance(event, ToolCallEnd):
            assert event.index in args
    assert not any("<tool_call>" in e.text for e in events if isinstance(e, ThinkingDelta))
    return text, thinking, [(n, json.loads(args[i])) for i, n in enumerate(calls)]


def per_char(text: str) -> list[str]:
    return list(text)


CASES = [
    # (name, output, text, thinking, calls)
    ("plain text", "Hello there.", "Hello there.", "", []),
    (
        "one call",
        '<tool_call>\n{"name": "Read", "arguments": {"path": "a.py"}}\n</tool_call>',
        "",
        "",
        [("Read", {"path": "a.py"})],
    ),
    (
        "text before and after",
        'Let me look.\n<tool_call>{"name": "Bash", "arguments": {"cmd": "ls"}}</tool_call>\nDone',
        "Let me look.\n\nDone",
        "",
        [("Bash", {"cmd": "ls"})],
    ),
    (
        "two calls",
        '<tool_call>{"name": "Read", "arguments": {"path": "a"}}</tool_call>'
        '<tool_call>{"name": "Read", "arguments": {"path": "b"}}</tool_call>',
        "",
        "",
        [("Read", {"path": "a"}), ("Read", {"path": "b"})],
    ),
    (
        "arguments as a JSON string",
        '<tool_call>{"name": "Bash", "arguments": "{\\"cmd\\": \\"pwd\\"}"}</tool_call>',
        "",
        "",
        [("Bash", {"cmd": "pwd"})],
    ),
    (
        "nested and unicode arguments",
        '<tool_call>{"name": "Edit", "arguments": {"edits": [{"old": "é", "new": "日本"}], '
        '"opts": {"dry": true}}}</tool_call>',
        "",
        "",
        [("Edit", {"edits": [{"old": "é", "new": "日本"}], "opts": {"dry": True}})],
    ),
    (
        "malformed JSON falls back to text",
        '<tool_call>{"name": "Read", "arguments": {"path": }</tool_call>',
        '<tool_call>{"name": "Read", "arguments": {"path": }</tool_call>',
        "",
        [],
    ),
    (
        "unknown tool falls back to text",
        '<tool_call>{"name": "Nope", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "Nope", "arguments": {}}</tool_call>',
        "",
        [],
    ),
    (
        "truncated call falls back to text",
        '<tool_call>{"name": "Read", "argu',
        '<tool_call>{"name": "Read", "argu',
        "",
        [],
    ),
    (
        "complete JSON without the closing tag is a call",
        '<tool_call>{"name": "Read", "arguments": {"path": "x"}}',
        "",
        "",
        [("Read", {"path": "x"})],
    ),
    (
        "bare JSON call",
        '{"name": "Bash", "arguments": {"cmd": "ls -la"}}',
        "",
        "",
        [("Bash", {"cmd": "ls -la"})],
    ),
    (
        "bare JSON in a code fence with parameters",
        '```json\n{"name": "Read", "parameters": {"path": "r.md"}}\n```',
        "",
        "",
        [("Read", {"path": "r.md"})],
    ),
    (
        "bare JSON that is not a call stays text",
        '{"answer": 42}',
        '{"answer": 42}',
        "",
        [],
    ),
    (
        "thinking then answer",
        "<think>Let me think.</think>\n\nThe answer is 4.",
        "The answer is 4.",
        "Let me think.",
        [],
    ),
    (
        "thinking then a call",
        '<think>need a file</think><tool_call>{"name": "Read", "arguments": {}}</tool_call>',
        "",
        "need a file",
        [("Read", {})],
    ),
    ("a lone angle bracket is text", "a < b and c <tool", "a < b and c <tool", "", []),
]


@pytest.mark.parametrize("name,output,text,thinking,calls", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("split", [lambda s: [s], per_char], ids=["whole", "per-char"])
def test_parser_table(name, output, text, thinking, calls, split):
    got_text, got_thinking, got_calls = run(split(output))
    assert got_text == text
    assert got_thinking == thinking
    assert got_calls == calls


def test_markup_never_streams_as_text_before_the_call_is_decided():
    parser = parser_for("hermes", TOOLS)
    streamed = []
    for char in '<tool_call>{"name": "Read", "arguments": {}}</tool_call>':
        streamed.extend(parser.feed(char))
    assert not any(isinstance(e, TextDelta) for e in streamed)
    assert [type(e) for e in streamed] == [ToolCallStart, ToolCallDelta, ToolCallEnd]


def test_text_streams_before_the_end():
    parser = parser_for("hermes", TOOLS)
    assert parser.feed("Hello ") == [TextDelta("Hello ")]


def test_bare_json_without_tools_is_text():
    text, _, calls = run(['{"name": "Read", "arguments": {}}'], tools=[])
    assert calls == [] and text.startswith("{")


def test_family_detection_falls_back_to_hermes():
    assert family_for("{{ messages }}") == "hermes"
    assert family_for("... <tool_call> ...") == "hermes"
