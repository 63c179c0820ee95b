"""A tool schema that expands exponentially (a 2.5 KB chain of $defs, each pointing at the next
one twice through allOf) is a SchemaTooComplexError naming the bound, within a second, wherever
a schema is read: the forced and lazy call grammars, the response-format grammar, and the
parsers' reading of which parameters hold JSON."""

from __future__ import annotations

import json
import time

import pytest

from agentport.chat.families import parser_for
from agentport.chat.grammar import json_grammar
from agentport.chat.json_schema import MAX_DEPTH, Expansion, flatten, resolve_pointer
from agentport.chat.tool_calls import calls_grammar
from agentport.core import ToolSpec
from agentport.engines.llamacpp_grammar import grammar_compiles
from agentport.errors import InvalidRequestError, SchemaTooComplexError


def doubling_chain(levels: int = 40) -> dict:
    defs: dict = {f"d{levels}": {"type": "object", "properties": {"x": {"type": "string"}}}}
    for i in range(levels):
        defs[f"d{i}"] = {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
    return {"type": "object", "properties": {"p": {"$ref": "#/$defs/d0"}}, "$defs": defs}


HOSTILE = ToolSpec("Hostile", "", doubling_chain())


def test_the_hostile_schema_is_small():
    assert 2000 < len(json.dumps(HOSTILE.input_schema)) < 3000


def within_a_second(action) -> SchemaTooComplexError:
    started = time.perf_counter()
    with pytest.raises(SchemaTooComplexError) as caught:
        action()
    assert time.perf_counter() - started < 1.0
    assert isinstance(caught.value, InvalidRequestError)  # a 400
    assert "$ref" in caught.value.bound and "$ref" in caught.value.message
    return caught.value


@pytest.mark.parametrize("family", ["hermes", "mistral", "llama3", "deepseek", "generic"])
@pytest.mark.parametrize("lazy", [False, True])
def test_call_grammars_stop_at_the_bound(family, lazy):
    within_a_second(lambda: calls_grammar(family, [HOSTILE], lazy=lazy, compiles=grammar_compiles))


def test_the_lazy_qwen3_coder_grammar_stops_at_the_bound():
    within_a_second(
        lambda: calls_grammar("qwen3_coder", [HOSTILE], lazy=True, compiles=grammar_compiles)
    )


def test_the_response_format_grammar_stops_at_the_bound():
    within_a_second(lambda: json_grammar(HOSTILE.input_schema, grammar_compiles))


@pytest.mark.parametrize("family", ["qwen3_coder", "hermes"])
def test_the_parsers_stop_at_the_bound(family):
    within_a_second(lambda: parser_for(family, [HOSTILE]))


def test_a_deep_nesting_names_the_depth_bound():
    schema: dict = {"type": "string"}
    for _ in range(MAX_DEPTH + 5):
        schema = {"type": "array", "items": schema}
    tool = ToolSpec("Deep", "", {"type": "object", "properties": {"p": schema}})
    with pytest.raises(SchemaTooComplexError) as caught:
        calls_grammar("hermes", [tool], compiles=grammar_compiles)
    assert str(MAX_DEPTH) in caught.value.bound


def test_an_allof_cycle_adds_nothing_and_is_not_an_error():
    root = {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}], "type": "string"}}}
    assert flatten(root, root["$defs"]["a"], Expansion()) == {"type": "string"}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("#", "ROOT"),
        ("#/$defs/a~1b", 1),
        ("#/$defs/t~0", 2),
        ("#/$defs/sp%20ace", 3),
        ("#/list/1", "second"),
        ("#/$defs/missing", None),
        ("other.json#/$defs/a~1b", None),
    ],
)
def test_resolve_pointer_follows_json_pointer(ref, expected):
    root = {"$defs": {"a/b": 1, "t~": 2, "sp ace": 3}, "list": ["first", "second"]}
    assert resolve_pointer(root, ref) == (root if expected == "ROOT" else expected)
