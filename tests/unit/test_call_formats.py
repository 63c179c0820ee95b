"""Tool-call formats per model family: every family's calls grammar compiles in llama.cpp
(forced and lazy, one call or several), names only the tools asked for, and its lazy triggers
fire where a call starts and nowhere else; forced prefixes per family and mode."""

from __future__ import annotations

import re

import pytest

from agentport.chat.call_format import text_without
from agentport.chat.families import FAMILIES, PROMPT_FAMILY, call_format
from agentport.chat.tool_calls import calls_grammar, forced_prefix, prompt_family
from agentport.core import ChatRequest, Message, TextPart, ToolChoice, ToolSpec
from agentport.engines.llamacpp_grammar import grammar_compiles as compiles
from agentport.errors import InvalidRequestError

TOOLS = [
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
        "mcp__git.status-v2",
        "",
        {
            "type": "object",
            "properties": {
                "paths": {"type": "array", "items": {"type": "string"}},
                "mode": {"enum": ["short", "long"]},
                "depth": {"type": ["integer", "null"], "minimum": 0, "maximum": 9},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "key": {"type": "string", "pattern": "^[a-z]+$"},
                "opts": {"type": "object", "properties": {"x": {"type": "boolean"}}},
            },
            "required": ["mode"],
        },
    ),
    ToolSpec("NoArgs", "", {}),
    ToolSpec("Ünïcode", "", {"type": "object", "properties": {"ключ": {"type": "string"}}}),
]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_every_family_grammar_compiles(family, lazy, parallel):
    grammar = calls_grammar(family, TOOLS, lazy=lazy, parallel=parallel, compiles=compiles)
    assert grammar is not None and compiles(grammar), grammar


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_named_tool_restricts_the_grammar(family):
    grammar = calls_grammar(family, TOOLS, only="Read", compiles=compiles)
    assert "Read" in grammar and "NoArgs" not in grammar
    assert calls_grammar(family, TOOLS, only="Nope", compiles=compiles) is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lazy_grammars_start_with_the_trigger(family):
    fmt = call_format(family)
    lazy = calls_grammar(family, TOOLS, lazy=True, compiles=compiles)
    root = lazy.splitlines()[0]
    if fmt.anywhere:
        assert root.startswith(f'root ::= "{fmt.forced_prefix}'.replace("\n", "\\n")), root


def matches(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None  # these patterns mean the same in ECMAScript


@pytest.mark.parametrize("family", ["hermes", "qwen3_coder"])
def test_tag_triggers_fire_at_the_end_of_the_tag_only(family):
    (text, pattern), *_ = call_format(family).triggers()
    assert text == "<tool_call>"
    assert matches(pattern, "Let me look.\n<tool_call>")
    assert matches(pattern, "<tool_call>\n")
    assert not matches(pattern, "<tool_call> x")  # a token the grammar would refuse: no start
    assert not matches(pattern, "<tool_call")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_json_triggers_fire_only_at_the_start(family):
    patterns = [p for _, p in call_format(family).triggers()]
    start = patterns[-1]  # every family: the bare JSON call that all parsers read
    assert start.startswith("^")
    assert matches(start, '{"name"') and matches(start, ' \n{"name": "')
    assert not matches(start, 'Sure: {"name"') and not matches(start, '{"name": "Read"')


def test_special_token_triggers():
    assert ("<|python_tag|>", r"(<\|python_tag\|>)$") in call_format("llama3").triggers()
    (text, pattern), *_ = call_format("mistral").triggers()
    assert text == "[TOOL_CALLS]" and matches(pattern, "x[TOOL_CALLS]")
    (text, _), *_ = call_format("deepseek").triggers()
    assert text == "<｜tool▁calls▁begin｜>"


def request(mode: str, name: str | None = None) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message("user", [TextPart("hi")])],
        tools=TOOLS,
        tool_choice=ToolChoice(mode, name),
    )


@pytest.mark.parametrize(
    "family,mode,named,expected",
    [
        ("hermes", "any", True, "<tool_call>\n"),
        ("hermes", "tool", True, '<tool_call>\n{"name": "Read", "arguments": '),
        ("hermes", "tool", False, "<tool_call>\n"),
        ("qwen3_coder", "tool", True, "<tool_call>\n<function=Read>\n"),
        ("llama3", "any", True, ""),
        ("mistral", "any", True, "[TOOL_CALLS]"),
        ("deepseek", "any", True, "<｜tool▁calls▁begin｜>"),
        ("generic", "tool", True, '{"name": "Read", "arguments": '),
        ("hermes", "auto", True, ""),
        ("hermes", "none", True, ""),
    ],
)
def test_forced_prefixes(family, mode, named, expected):
    assert (
        forced_prefix(request(mode, "Read" if mode == "tool" else None), family, named) == expected
    )


def test_families_and_fallbacks():
    assert prompt_family("llama3", native_tools=False) == PROMPT_FAMILY == "hermes"
    assert prompt_family("llama3", native_tools=True) == "llama3"
    with pytest.raises(InvalidRequestError):
        call_format("no-such-family")
    assert call_format("hermes").stops == ("<tool_call>",)
    assert call_format("generic").stops == ()


def test_xml_text_cannot_grow_into_the_closing_tag():
    pattern = text_without("</parameter>")
    assert compiles(f"root ::= ({pattern})*")
    assert '"<" ([^/<] | "/" ([^p<]' in pattern and '"r" [^><]' in pattern


def test_a_schema_that_defeats_the_converter_is_relaxed_to_any_arguments():
    looping = {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}}}
    tools = [ToolSpec("Loop", "", {**looping, "$ref": "#/$defs/a"}), TOOLS[0]]
    grammar = calls_grammar("hermes", tools, compiles=compiles)
    assert grammar is not None and compiles(grammar) and "Loop" in grammar
    assert "Read-args-object-file-path-kv" in grammar  # the other tool keeps its schema


def test_a_fenced_or_listed_json_call_triggers_too():
    start = call_format("hermes").triggers()[-1][1]
    assert matches(start, '```json\n{"name"') and matches(start, '[{"name": "')
    assert not matches(start, 'Sure ```json\n{"name"')
