"""Tool-call and thinking parsers, a table per family, each output fed whole, one character at a
time and in random 1-3 character pieces; all splits must give the same events, the arguments'
pieces must add up to JSON equal to the expected arguments, and markup never reaches the text."""

from __future__ import annotations

import json
import random

import pytest

from agentport.chat.families import FAMILIES, call_format, parser_for
from agentport.chat.json_scanner import JsonScanner
from agentport.core import (
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
)

EDIT_ITEM = {"type": "object", "properties": {"old": {"type": "string"}, "new": {"type": "string"}}}
TOOLS = [
    ToolSpec(
        "Read",
        "read a file",
        {
            "type": "object",
            "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["path"],
        },
    ),
    ToolSpec(
        "Bash",
        "run a command",
        {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": ["number", "null"]}},
            "required": ["command"],
        },
    ),
    ToolSpec(
        "Edit",
        "edit a file",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "edits": {"type": "array", "items": EDIT_ITEM},
                "dry_run": {"type": "boolean"},
            },
        },
    ),
]
MARKUP = (
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<function=",
    "<parameter=",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[THINK]",
    "｜tool",
    "```",
)


def whole(text: str) -> list[str]:
    return [text]


def per_char(text: str) -> list[str]:
    return list(text)


def pieces(seed: int):
    def split(text: str) -> list[str]:
        rng, out, index = random.Random(seed), [], 0
        while index < len(text):
            size = rng.randint(1, 3)
            out.append(text[index : index + size])
            index += size
        return out

    return split


SPLITS = [whole, per_char, pieces(1), pieces(2), pieces(3)]


def feed(family: str, chunks: list[str], thinking_open: bool = False, tools=TOOLS) -> list:
    parser = parser_for(family, tools, thinking_open)
    events = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.finish())
    assert parser.tool_calls == sum(isinstance(e, ToolCallStart) for e in events)
    return events


def normalized(events: list) -> list:
    """Events with ids blanked and neighbouring pieces of the same kind joined."""
    out: list = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, ToolCallStart):
            out.append(ToolCallStart(event.index, "", event.name))
        elif type(event) is type(last) and isinstance(event, TextDelta | ThinkingDelta):
            out[-1] = type(event)(last.text + event.text)
        elif isinstance(event, ToolCallDelta) and isinstance(last, ToolCallDelta):
            out[-1] = ToolCallDelta(event.index, last.arguments + event.arguments)
        else:
            out.append(event)
    return out


def outcome(events: list) -> tuple[str, str, list[tuple[str, dict]]]:
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    calls, arguments, open_calls = [], {}, set()
    for event in events:
        if isinstance(event, ToolCallStart):
            assert event.index == len(calls) and event.id
            calls.append(event.name)
            arguments[event.index] = ""
            open_calls.add(event.index)
        elif isinstance(event, ToolCallDelta):
            assert event.index in open_calls and event.arguments
            arguments[event.index] += event.arguments
        elif isinstance(event, ToolCallEnd):
            open_calls.remove(event.index)
    assert not open_calls, "every started call ends"
    parsed = [json.loads(arguments[index]) for index in range(len(calls))]
    assert all(isinstance(p, dict) for p in parsed)
    return text, thinking, list(zip(calls, parsed, strict=True))


def check(family, output, text, thinking, calls, thinking_open=False):
    results = [feed(family, split(output), thinking_open) for split in SPLITS]
    got = outcome(results[0])
    assert got == (text, thinking, calls)
    for result in results[1:]:
        assert normalized(result) == normalized(results[0])
    if calls or thinking:
        assert not any(marker in got[0] for marker in MARKUP), got[0]


def ids(cases):
    return [case[0] for case in cases]


READ_A = ("Read", {"path": "a.py"})
NESTED = {
    "path": "docs/日本語.md",
    "edits": [{"old": 'say "hi"\n', "new": "héllo 👋\ttab"}],
    "dry_run": True,
}

HERMES = [
    ("plain text", "Hello there.", "Hello there.", "", []),
    (
        "one call",
        '<tool_call>\n{"name": "Read", "arguments": {"path": "a.py"}}\n</tool_call>',
        "",
        "",
        [READ_A],
    ),
    (
        "text before and after",
        'Let me look.\n<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}</tool_call>\nOk',
        "Let me look.\n\nOk",
        "",
        [("Bash", {"command": "ls"})],
    ),
    (
        "two calls, two tags",
        '<tool_call>{"name": "Read", "arguments": {"path": "a"}}</tool_call>\n'
        '<tool_call>{"name": "Read", "arguments": {"path": "b"}}</tool_call>',
        "",
        "",
        [("Read", {"path": "a"}), ("Read", {"path": "b"})],
    ),
    (
        "two calls in one tag, as a list",
        '<tool_call>[{"name": "Read", "arguments": {"path": "a"}}, '
        '{"name": "Bash", "arguments": {"command": "pwd"}}]</tool_call>',
        "",
        "",
        [("Read", {"path": "a"}), ("Bash", {"command": "pwd"})],
    ),
    (
        "arguments as a JSON string",
        '<tool_call>{"name": "Bash", "arguments": "{\\"command\\": \\"pwd\\"}"}</tool_call>',
        "",
        "",
        [("Bash", {"command": "pwd"})],
    ),
    (
        "arguments before the name",
        '<tool_call>{"arguments": {"path": "a.py"}, "name": "Read"}</tool_call>',
        "",
        "",
        [READ_A],
    ),
    (
        "OpenAI's nested shape",
        '<tool_call>{"type": "function", "function": {"name": "Read", "arguments": '
        '{"path": "a.py"}}}</tool_call>',
        "",
        "",
        [READ_A],
    ),
    (
        "nested and unicode arguments",
        '<tool_call>{"name": "Edit", "arguments": {"path": "docs/日本語.md", "edits": '
        '[{"old": "say \\"hi\\"\\n", "new": "h\\u00e9llo 👋\\ttab"}], "dry_run": true}}'
        "</tool_call>",
        "",
        "",
        [("Edit", NESTED)],
    ),
    (
        "raw newlines in a string, a trailing comma and Python's True",
        '<tool_call>{"name": "Edit", "arguments": {"path": "a\nb", "dry_run": True,}}</tool_call>',
        "",
        "",
        [("Edit", {"path": "a\nb", "dry_run": True})],
    ),
    (
        "malformed before the call starts: text",
        '<tool_call>{"name": "Read" "arguments": {}}</tool_call>',
        '<tool_call>{"name": "Read" "arguments": {}}</tool_call>',
        "",
        [],
    ),
    (
        "malformed after the call starts: the call ends where it broke",
        '<tool_call>{"name": "Read", "arguments": {"path": "a.py", "limit": }}</tool_call>Next',
        "Next",
        "",
        [READ_A],
    ),
    (
        "unknown tool: text",
        '<tool_call>{"name": "Nope", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "Nope", "arguments": {}}</tool_call>',
        "",
        [],
    ),
    (
        "truncated before the call starts: text",
        '<tool_call>{"name": "Read", "argu',
        '<tool_call>{"name": "Read", "argu',
        "",
        [],
    ),
    (
        "truncated inside a string: closed",
        '<tool_call>{"name": "Bash", "arguments": {"command": "ls -la /tm',
        "",
        "",
        [("Bash", {"command": "ls -la /tm"})],
    ),
    (
        "truncated inside a key or a number: closed before it",
        '<tool_call>{"name": "Read", "arguments": {"path": "a.py", "limit": 12',
        "",
        "",
        [READ_A],
    ),
    (
        "complete JSON without the closing tag",
        '<tool_call>{"name": "Read", "arguments": {"path": "a.py"}}',
        "",
        "",
        [READ_A],
    ),
    (
        "bare JSON call",
        '{"name": "Bash", "arguments": {"command": "ls -la"}}',
        "",
        "",
        [("Bash", {"command": "ls -la"})],
    ),
    (
        "bare JSON in a code fence with parameters",
        '```json\n{"name": "Read", "parameters": {"path": "a.py"}}\n```',
        "",
        "",
        [READ_A],
    ),
    ("bare JSON that is not a call stays text", '{"answer": 42}', '{"answer": 42}', "", []),
    ("a code fence that is not JSON", "```py\nprint(1)\n```", "```py\nprint(1)\n```", "", []),
    (
        "thinking then answer",
        "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
        "The answer is 4.",
        "Let me think.",
        [],
    ),
    (
        "thinking then a call",
        '<think>need a file</think>\n<tool_call>{"name": "Read", "arguments": {}}</tool_call>',
        "",
        "need a file",
        [("Read", {})],
    ),
    (
        "thinking then a bare call",
        '<think>hm</think>{"name": "Read", "arguments": {"path": "a.py"}}',
        "",
        "hm",
        [READ_A],
    ),
    ("an empty think block", "<think>\n\n</think>\n\nHi", "Hi", "", []),
    ("a lone angle bracket is text", "a < b and c <tool", "a < b and c <tool", "", []),
]

QWEN3_CODER = [
    (
        "a JSON value whose string holds the closing tag ends at the tag after a newline",
        '<tool_call>\n<function=Edit>\n<parameter=edits>\n[{"old": "a</parameter>b", "new": "c"}]'
        "\n</parameter>\n</function>\n</tool_call>",
        "",
        "",
        [("Edit", {"edits": [{"old": "a</parameter>b", "new": "c"}]})],
    ),
    (
        "one call, typed parameters",
        "<tool_call>\n<function=Read>\n<parameter=path>\nsrc/a.py\n</parameter>\n"
        "<parameter=limit>\n20\n</parameter>\n</function>\n</tool_call>",
        "",
        "",
        [("Read", {"path": "src/a.py", "limit": 20})],
    ),
    (
        "a multi-line value keeps its inner newlines",
        '<tool_call>\n<function=Bash>\n<parameter=command>\nfor f in *; do\n  echo "$f"\ndone\n'
        "</parameter>\n</function>\n</tool_call>",
        "",
        "",
        [("Bash", {"command": 'for f in *; do\n  echo "$f"\ndone'})],
    ),
    (
        "text before and after, two calls",
        "I'll look.\n\n<tool_call>\n<function=Read>\n<parameter=path>\na.py\n</parameter>\n"
        "</function>\n</tool_call>\n<tool_call>\n<function=Bash>\n<parameter=command>\nls\n"
        "</parameter>\n</function>\n</tool_call>\nDone.",
        "I'll look.\n\n\nDone.",
        "",
        [READ_A, ("Bash", {"command": "ls"})],
    ),
    (
        "two functions in one tag",
        "<tool_call>\n<function=Read>\n<parameter=path>\na.py\n</parameter>\n</function>\n"
        "<function=Read>\n<parameter=path>\nb.py\n</parameter>\n</function>\n</tool_call>",
        "",
        "",
        [READ_A, ("Read", {"path": "b.py"})],
    ),
    (
        "nested and unicode: JSON-typed parameters",
        "<tool_call>\n<function=Edit>\n<parameter=path>\ndocs/日本語.md\n</parameter>\n"
        '<parameter=edits>\n[{"old": "say \\"hi\\"\\n", "new": "héllo 👋\\ttab"}]\n</parameter>\n'
        "<parameter=dry_run>\nTrue\n</parameter>\n</function>\n</tool_call>",
        "",
        "",
        [("Edit", NESTED)],
    ),
    (
        "a string parameter that looks like a number stays a string",
        "<tool_call>\n<function=Read>\n<parameter=path>\n123\n</parameter>\n</function>\n"
        "</tool_call>",
        "",
        "",
        [("Read", {"path": "123"})],
    ),
    (
        "a number parameter that is not JSON becomes a string",
        "<tool_call>\n<function=Read>\n<parameter=limit>\nten\n</parameter>\n</function>\n"
        "</tool_call>",
        "",
        "",
        [("Read", {"limit": "ten"})],
    ),
    (
        "a missing closing parameter tag",
        "<tool_call>\n<function=Bash>\n<parameter=command>\nls\n<parameter=timeout>\n5\n"
        "</function>\n</tool_call>",
        "",
        "",
        [("Bash", {"command": "ls", "timeout": 5})],
    ),
    (
        "JSON inside the tags (a forced call)",
        '<tool_call>\n{"name": "Read", "arguments": {"path": "a.py"}}\n</tool_call>',
        "",
        "",
        [READ_A],
    ),
    (
        "truncated inside a value: closed",
        "<tool_call>\n<function=Bash>\n<parameter=command>\nls -la /tm",
        "",
        "",
        [("Bash", {"command": "ls -la /tm"})],
    ),
    (
        "truncated inside a JSON-typed value: the value is dropped",
        "<tool_call>\n<function=Read>\n<parameter=path>\na.py\n</parameter>\n<parameter=limit>\n2",
        "",
        "",
        [READ_A],
    ),
    (
        "truncated before the name is complete: text",
        "<tool_call>\n<function=Rea",
        "<tool_call>\n<function=Rea",
        "",
        [],
    ),
    (
        "unknown function: text",
        "<tool_call>\n<function=Nope>\n</function>\n</tool_call>",
        "<tool_call>\n<function=Nope>\n</function>\n</tool_call>",
        "",
        [],
    ),
    (
        "malformed after the call starts: ends, the rest of the tag dropped",
        "<tool_call>\n<function=Read>\n<parameter=path>\na.py\n</parameter>\noops\n</function>\n"
        "</tool_call>Next",
        "Next",
        "",
        [READ_A],
    ),
    (
        "thinking then a call (Qwen3.5)",
        "<think>\nread it\n</think>\n\n<tool_call>\n<function=Read>\n<parameter=path>\na.py\n"
        "</parameter>\n</function>\n</tool_call>",
        "",
        "read it",
        [READ_A],
    ),
]

LLAMA3 = [
    ("plain text", "It is sunny.", "It is sunny.", "", []),
    ("bare call", '{"name": "Read", "parameters": {"path": "a.py"}}', "", "", [READ_A]),
    (
        "python tag",
        '<|python_tag|>{"name": "Read", "parameters": {"path": "a.py"}}<|eom_id|>',
        "",
        "",
        [READ_A],
    ),
    (
        "type function",
        '{"type": "function", "name": "Bash", "parameters": {"command": "ls"}}',
        "",
        "",
        [("Bash", {"command": "ls"})],
    ),
    (
        "several calls separated by semicolons and newlines",
        '{"name": "Read", "parameters": {"path": "a.py"}}; {"name": "Read", "parameters": '
        '{"path": "b"}}\n{"name": "Bash", "parameters": {"command": "ls"}}',
        "",
        "",
        [READ_A, ("Read", {"path": "b"}), ("Bash", {"command": "ls"})],
    ),
    (
        "text before a python-tag call",
        'Checking.<|python_tag|>{"name": "Read", "parameters": {"path": "a.py"}}',
        "Checking.",
        "",
        [READ_A],
    ),
    (
        "text after a bare call",
        '{"name": "Read", "parameters": {"path": "a.py"}}\n\nDone.',
        "Done.",
        "",
        [READ_A],
    ),
    (
        "nested and unicode",
        '{"name": "Edit", "parameters": {"path": "docs/日本語.md", "edits": [{"old": '
        '"say \\"hi\\"\\n", "new": "héllo 👋\\ttab"}], "dry_run": true}}',
        "",
        "",
        [("Edit", NESTED)],
    ),
    (
        "malformed before the call starts: text",
        '{"name": Read, "parameters": {}}',
        '{"name": Read, "parameters": {}}',
        "",
        [],
    ),
    (
        "truncated inside the arguments: closed",
        '{"name": "Edit", "parameters": {"path": "x", "edits": [{"old": "a", "ne',
        "",
        "",
        [("Edit", {"path": "x", "edits": [{"old": "a"}]})],
    ),
    ("JSON that is not a call stays text", '{"city": "Paris"}', '{"city": "Paris"}', "", []),
    ("a python-tag that is code is text", "<|python_tag|>print(1)", "print(1)", "", []),
]

MISTRAL = [
    (
        "a JSON list with ids (v3 to v7)",
        '[TOOL_CALLS] [{"name": "Read", "arguments": {"path": "a.py"}, "id": "abcdefghi"}]',
        "",
        "",
        [READ_A],
    ),
    (
        "two calls in the list",
        '[TOOL_CALLS][{"name": "Read", "arguments": {"path": "a.py"}}, {"name": "Bash", '
        '"arguments": {"command": "ls"}}]',
        "",
        "",
        [READ_A, ("Bash", {"command": "ls"})],
    ),
    ("name[ARGS] (v11+)", '[TOOL_CALLS]Read[ARGS]{"path": "a.py"}', "", "", [READ_A]),
    (
        "two name[ARGS] calls",
        '[TOOL_CALLS]Read[ARGS]{"path": "a.py"}[TOOL_CALLS]Bash[ARGS]{"command": "ls"}',
        "",
        "",
        [READ_A, ("Bash", {"command": "ls"})],
    ),
    (
        "a call id",
        '[TOOL_CALLS]Read[CALL_ID]a1b2c3d4e[ARGS]{"path": "a.py"}',
        "",
        "",
        [READ_A],
    ),
    (
        "text before",
        'Sure.[TOOL_CALLS]Bash[ARGS]{"command": "ls"}',
        "Sure.",
        "",
        [("Bash", {"command": "ls"})],
    ),
    (
        "nested and unicode",
        '[TOOL_CALLS]Edit[ARGS]{"path": "docs/日本語.md", "edits": [{"old": "say \\"hi\\"\\n", '
        '"new": "héllo 👋\\ttab"}], "dry_run": true}',
        "",
        "",
        [("Edit", NESTED)],
    ),
    (
        "reasoning in [THINK]",
        "[THINK]Plan: read.[/THINK]Answer.",
        "Answer.",
        "Plan: read.",
        [],
    ),
    (
        "truncated: closed",
        '[TOOL_CALLS]Bash[ARGS]{"command": "git log --one',
        "",
        "",
        [("Bash", {"command": "git log --one"})],
    ),
    ("unknown tool: text, without the markers", "[TOOL_CALLS]Nope[ARGS]{}", "Nope{}", "", []),
    (
        "malformed list: text, without the marker",
        '[TOOL_CALLS][{"nam": "Read"}]',
        '[{"nam": "Read"}]',
        "",
        [],
    ),
]

DS_CALLS, DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"


def ds_v3(name: str, arguments: str) -> str:
    return f"{DS_CALL}function{DS_SEP}{name}\n```json\n{arguments}\n```{DS_CALL_END}"


def ds_v31(name: str, arguments: str) -> str:
    return f"{DS_CALL}{name}{DS_SEP}{arguments}{DS_CALL_END}"


DEEPSEEK = [
    (
        "R1 / V3 form",
        DS_CALLS + ds_v3("Read", '{"path": "a.py"}') + DS_CALLS_END,
        "",
        "",
        [READ_A],
    ),
    (
        "two calls",
        DS_CALLS
        + ds_v3("Read", '{"path": "a.py"}')
        + "\n"
        + ds_v3("Bash", '{"command": "ls"}')
        + DS_CALLS_END,
        "",
        "",
        [READ_A, ("Bash", {"command": "ls"})],
    ),
    (
        "V3.1 form",
        DS_CALLS
        + ds_v31("Read", '{"path": "a.py"}')
        + ds_v31("Bash", '{"command": "ls"}')
        + DS_CALLS_END,
        "",
        "",
        [READ_A, ("Bash", {"command": "ls"})],
    ),
    (
        "text before",
        "Let me check." + DS_CALLS + ds_v3("Read", '{"path": "a.py"}') + DS_CALLS_END,
        "Let me check.",
        "",
        [READ_A],
    ),
    (
        "think block then a call",
        "<think>\nneed it\n</think>\n\n"
        + DS_CALLS
        + ds_v31("Read", '{"path": "a.py"}')
        + DS_CALLS_END,
        "",
        "need it",
        [READ_A],
    ),
    (
        "nested and unicode",
        DS_CALLS
        + ds_v3(
            "Edit",
            '{"path": "docs/日本語.md", "edits": [{"old": "say \\"hi\\"\\n", "new": '
            '"héllo 👋\\ttab"}], "dry_run": true}',
        )
        + DS_CALLS_END,
        "",
        "",
        [("Edit", NESTED)],
    ),
    (
        "truncated: closed",
        DS_CALLS + f'{DS_CALL}function{DS_SEP}Bash\n```json\n{{"command": "ls -',
        "",
        "",
        [("Bash", {"command": "ls -"})],
    ),
    (
        "unknown tool: text without the special tokens",
        DS_CALLS + ds_v31("Nope", "{}") + DS_CALLS_END,
        "Nope{}",
        "",
        [],
    ),
    (
        "malformed after the call starts: the rest of the calls dropped",
        DS_CALLS + ds_v31("Read", '{"path": "a.py", "limit": ]}') + DS_CALLS_END + "Next",
        "Next",
        "",
        [READ_A],
    ),
    (
        "underscore spellings of the tokens",
        '<｜tool_calls_begin｜><｜tool_call_begin｜>Read<｜tool_sep｜>{"path": "a.py"}'
        "<｜tool_call_end｜><｜tool_calls_end｜>",
        "",
        "",
        [READ_A],
    ),
]

GENERIC = [
    ("bare call", '{"name": "Read", "arguments": {"path": "a.py"}}', "", "", [READ_A]),
    (
        "a list of calls in a fence",
        '```json\n[{"name": "Read", "arguments": {"path": "a.py"}}, {"name": "Bash", '
        '"arguments": {"command": "ls"}}]\n```',
        "",
        "",
        [READ_A, ("Bash", {"command": "ls"})],
    ),
    (
        "a fenced call after text",
        'I will read it.\n```json\n{"name": "Read", "arguments": {"path": "a.py"}}\n```\n'
        "Then more.",
        "I will read it.\n\nThen more.",
        "",
        [READ_A],
    ),
    (
        "a fenced JSON block that is not a call",
        'Example:\n```json\n{"a": 1}\n```',
        'Example:\n```json\n{"a": 1}\n```',
        "",
        [],
    ),
    (
        "Hermes tags",
        '<tool_call>{"name": "Read", "arguments": {"path": "a.py"}}</tool_call>',
        "",
        "",
        [READ_A],
    ),
    (
        "truncated: closed",
        '{"name": "Bash", "arguments": {"command": "echo \\"hi',
        "",
        "",
        [("Bash", {"command": 'echo "hi'})],
    ),
]

TABLES = {
    "hermes": HERMES,
    "qwen3_coder": QWEN3_CODER,
    "llama3": LLAMA3,
    "mistral": MISTRAL,
    "deepseek": DEEPSEEK,
    "generic": GENERIC,
}
ROWS = [(family, *case) for family, cases in TABLES.items() for case in cases]


@pytest.mark.parametrize(
    "family,name,output,text,thinking,calls", ROWS, ids=[f"{r[0]}: {r[1]}" for r in ROWS]
)
def test_family_table(family, name, output, text, thinking, calls):
    check(family, output, text, thinking, calls)


def test_every_family_has_a_table():
    assert set(TABLES) == set(FAMILIES)


COMMON = [
    (
        "Hermes tags",
        'Sure.\n<tool_call>\n{"name": "Read", "arguments": {"path": "a.py"}}\n</tool_call>',
        "Sure.\n",
        "",
        [READ_A],
    ),
    ("bare JSON", '{"name": "Read", "arguments": {"path": "a.py"}}', "", "", [READ_A]),
    ("think block", "<think>hmm</think>Yes.", "Yes.", "hmm", []),
    ("a stray closing think tag is dropped", "Yes.</think> No.", "Yes. No.", "", []),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name,output,text,thinking,calls", COMMON, ids=ids(COMMON))
def test_every_family_reads_the_common_formats(family, name, output, text, thinking, calls):
    check(family, output, text, thinking, calls)


@pytest.mark.parametrize(
    "family,output",
    [
        ("deepseek", "The user wants a file.\n</think>\n\nReading."),
        ("hermes", "The user wants a file.</think>Reading."),
        ("mistral", "The user wants a file.[/THINK]Reading."),
    ],
)
def test_output_that_starts_inside_thinking(family, output):
    check(family, output, "Reading.", "The user wants a file.", [], thinking_open=True)


def test_thinking_open_then_a_call():
    output = "plan</think>" + DS_CALLS + ds_v31("Read", '{"path": "a.py"}') + DS_CALLS_END
    check("deepseek", output, "", "plan", [READ_A], thinking_open=True)


def stream_kinds(family: str, output: str) -> list:
    parser = parser_for(family, TOOLS)
    return [[type(e) for e in parser.feed(char)] for char in output]


LONG = "x" * 40
STREAMED = {
    "hermes": f'<tool_call>{{"name": "Bash", "arguments": {{"command": "{LONG}"}}}}</tool_call>',
    "qwen3_coder": f"<tool_call>\n<function=Bash>\n<parameter=command>\n{LONG}\n</parameter>\n"
    "</function>\n</tool_call>",
    "llama3": f'{{"name": "Bash", "parameters": {{"command": "{LONG}"}}}}',
    "mistral": f'[TOOL_CALLS]Bash[ARGS]{{"command": "{LONG}"}}',
    "deepseek": DS_CALLS + ds_v3("Bash", f'{{"command": "{LONG}"}}') + DS_CALLS_END,
    "generic": f'```json\n{{"name": "Bash", "arguments": {{"command": "{LONG}"}}}}\n```',
}


@pytest.mark.parametrize("family", FAMILIES)
def test_arguments_stream_as_they_are_written(family):
    output = STREAMED[family]
    per_feed = stream_kinds(family, output)
    flat = [kind for kinds in per_feed for kind in kinds]
    assert flat.count(ToolCallStart) == 1 and flat.count(ToolCallEnd) == 1
    start = next(i for i, kinds in enumerate(per_feed) if ToolCallStart in kinds)
    end = next(i for i, kinds in enumerate(per_feed) if ToolCallEnd in kinds)
    assert start < output.index(LONG), "the call starts before its arguments are written"
    deltas_while_writing = sum(ToolCallDelta in kinds for kinds in per_feed[start:end])
    assert deltas_while_writing >= len(LONG) // 2
    assert TextDelta not in flat


def test_a_forced_prefix_emits_nothing_until_the_model_writes():
    parser = parser_for("hermes", TOOLS)
    assert parser.feed('<tool_call>\n{"name": "Read", "arguments": ') == []
    events = parser.feed('{"path": "a.py"}}') + parser.finish()
    assert outcome(events) == ("", "", [READ_A])


def test_a_forced_call_under_a_grammar_in_qwen3_coder_tags():
    parser = parser_for("qwen3_coder", TOOLS)
    assert parser.feed("<tool_call>\n") == []
    events = parser.feed('{"name": "Read", "arguments": {"path": "a.py"}}') + parser.finish()
    assert outcome(events) == ("", "", [READ_A])


def test_plain_text_streams_at_once():
    parser = parser_for("hermes", TOOLS)
    assert parser.feed("Hello ") == [TextDelta("Hello ")]


def test_without_tools_bare_json_is_text_but_tags_are_calls():
    events = feed("hermes", ['{"name": "Read", "arguments": {}}'], tools=[])
    assert outcome(events) == ('{"name": "Read", "arguments": {}}', "", [])
    events = feed("hermes", ['<tool_call>{"name": "Any", "arguments": {}}</tool_call>'], tools=[])
    assert outcome(events) == ("", "", [("Any", {})])


def test_tool_calls_counts_started_calls():
    parser = parser_for("mistral", TOOLS)
    parser.feed('[TOOL_CALLS]Read[ARGS]{"path": "a"}[TOOL_CALLS]Bash[ARGS]{"comm')
    parser.finish()
    assert parser.tool_calls == 2


DOCUMENTS = [
    '{"path": "a\\"b\\\\c\\u00e9\\n", "n": -1.5e3, "ok": true, "none": null, '
    '"list": [1, [2, {}], "x"], "o": {"k": {"v": []}}}',
    '{\n  "edits": [\n    {"old": "a\\tb", "new": "日本"},\n    {"old": "", "new": "x"}\n  ]\n}',
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_prefix_of_the_arguments_closes_into_valid_json(document):
    for cut in range(1, len(document) + 1):
        scanner = JsonScanner()
        _, piece = scanner.feed(document[:cut])
        assert isinstance(json.loads(piece + scanner.closing()), dict), document[:cut]
    assert json.loads(piece) == json.loads(document)


FORCED_REST = {  # what the model writes after each family's forced prefix, naming Read
    "hermes": '{"path": "a.py"}}\n</tool_call>',
    "qwen3_coder": "<parameter=path>\na.py\n</parameter>\n</function>\n</tool_call>",
    "llama3": '{"path": "a.py"}}',
    "mistral": '{"path": "a.py"}}]',
    "deepseek": '{"path": "a.py"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    "generic": '{"path": "a.py"}}',
}


@pytest.mark.parametrize("family", FAMILIES)
def test_forced_prefixes_emit_nothing_and_the_call_follows(family):
    """The runtime feeds a forced call's prefix to the parser and drops what that returns."""
    form = call_format(family)
    parser = parser_for(family, TOOLS)
    assert parser.feed(form.forced_prefix) == []
    named = parser_for(family, TOOLS)
    assert named.feed(form.named_prefix("Read")) == []
    events = named.feed(FORCED_REST[family]) + named.finish()
    assert outcome(events) == ("", "", [READ_A])


def test_qwen3_coder_reads_a_ref_typed_parameter_as_json():
    tool = ToolSpec(
        "Wait",
        "",
        {
            "type": "object",
            "properties": {"seconds": {"$ref": "#/$defs/Seconds"}},
            "$defs": {"Seconds": {"type": "integer"}},
        },
    )
    output = "<tool_call>\n<function=Wait>\n<parameter=seconds>\n5\n</parameter>\n</function>"
    events = feed("qwen3_coder", [output], tools=[tool])
    assert outcome(events) == ("", "", [("Wait", {"seconds": 5})])


FRAGMENTS = [
    *MARKUP,
    "<tool_call>",
    '{"name": "Read", "arguments": {"path": "a.py", "limit": 3}}',
    "<function=Read>",
    "<parameter=path>",
    "</parameter>",
    "</function>",
    "[TOOL_CALLS]Read[ARGS]",
    DS_CALL + "Read" + DS_SEP,
    DS_CALL_END,
    DS_CALLS_END,
    "{",
    "}",
    "[",
    "]",
    '"name"',
    '"arguments"',
    ":",
    ",",
    '"Read"',
    '"Nope"',
    '"a\\',
    "\\u12",
    "True",
    "-1.5",
    " ",
    "\n",
    "text",
    "é👋",
    "<",
]


@pytest.mark.parametrize("seed", range(4))
def test_random_output_never_breaks_the_invariants(seed):
    """Random mixes of markup, JSON and text: no exception, every started call ends with valid
    JSON arguments (outcome checks), and the split does not change the events."""
    rng = random.Random(seed)
    for _ in range(150):
        output = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 20)))
        family = rng.choice(FAMILIES)
        thinking_open = rng.random() < 0.2
        results = [feed(family, split(output), thinking_open) for split in (whole, pieces(seed))]
        outcome(results[0])
        assert normalized(results[1]) == normalized(results[0]), (family, output)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_call_the_output_ends_inside_is_marked_cut_with_its_text(family):
    written = '<tool_call>{"name": "Bash", "arguments": {"command": "ls -la /tm'
    parser = parser_for(family, TOOLS)
    events = parser.feed(written) + parser.finish()
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [e.cut for e in ends] == [written]


def test_a_complete_call_is_not_marked_cut():
    parser = parser_for("hermes", TOOLS)
    events = parser.feed('<tool_call>{"name": "Read", "arguments": {"path": "a"}}</tool_call>')
    events += parser.finish()
    assert [e.cut for e in events if isinstance(e, ToolCallEnd)] == [None]


def test_a_call_without_the_arguments_its_tool_requires_is_text():
    written = '{"type": "function", "function": {"name": "Read"}, "arguments": [1]}'
    parser = parser_for("hermes", TOOLS)
    events = parser.feed(written) + parser.finish()
    assert not [e for e in events if isinstance(e, ToolCallStart)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == written
    parser = parser_for("hermes", TOOLS)  # Edit requires nothing: {} calls it
    events = parser.feed('{"name": "Edit"}') + parser.finish()
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["Edit"]
