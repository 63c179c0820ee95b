"""JSON schema -> grammar for forced tool calls and structured output."""

from __future__ import annotations

from agentport.chat.grammar import STRICT_CHAR, json_grammar, tool_call_grammar
from agentport.core import ToolSpec

AGENT_TOOLS = [
    ToolSpec(
        "Read",
        "",
        {
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "offset": {"type": "integer"}},
            "required": ["file_path"],
        },
    ),
    ToolSpec(
        "Edit",
        "",
        {
            "type": "object",
            "properties": {
                "edits": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                        "required": ["old", "new"],
                    },
                },
                "mode": {"enum": ["a", "b"]},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["edits"],
        },
    ),
]


def test_forced_call_grammar_names_every_tool_and_only_them():
    grammar = tool_call_grammar(AGENT_TOOLS)
    assert '"\\"Read\\""' in grammar and '"\\"Edit\\""' in grammar
    only = tool_call_grammar(AGENT_TOOLS, only="Edit")
    assert '"\\"Read\\""' not in only and '"\\"Edit\\""' in only


def test_unknown_named_tool_has_no_grammar():
    assert tool_call_grammar(AGENT_TOOLS, only="Nope") is None


def test_strings_never_hold_raw_control_characters():
    assert STRICT_CHAR in json_grammar({"type": "object", "properties": {"a": {"type": "string"}}})


def test_unconvertible_schema_is_relaxed_not_fatal():
    weird = {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}
    assert "root ::=" in json_grammar(weird)
    assert "root ::=" in tool_call_grammar([ToolSpec("X", "", weird)])
