"""JSON schema -> GBNF: what each keyword becomes, that llama.cpp compiles it, and that what is
unsupported is relaxed rather than fatal. Integer ranges and translated patterns are checked
exhaustively by reading the (rule-free) GBNF back as a Python regular expression."""

from __future__ import annotations

import json
import re

import pytest

from agentport.chat.grammar import (
    Pattern,
    Rules,
    SchemaRules,
    int_bounds,
    int_range,
    json_grammar,
    literal,
)
from agentport.engines.llamacpp_grammar import grammar_compiles as compiles


def grammar_of(schema) -> str:
    rules = Rules()
    return rules.grammar(SchemaRules(rules, schema).value(schema, "value"))


def as_regex(gbnf: str) -> re.Pattern:
    """A GBNF expression made of literals, classes, groups, `|` and repetitions (no rule
    references) as a Python regex."""
    out, at = [], 0
    while at < len(gbnf):
        char = gbnf[at]
        if char == '"':
            end = at + 1
            while gbnf[end] != '"':
                end += 2 if gbnf[end] == "\\" else 1
            out.append(re.escape(json.loads(gbnf[at : end + 1].replace("\\x", "\\u00"))))
            at = end + 1
        elif char == "[":
            end = gbnf.index("]", at + 2)
            out.append(gbnf[at : end + 1])
            at = end + 1
        elif char == "{":
            end = gbnf.index("}", at)
            out.append(gbnf[at : end + 1])
            at = end + 1
        elif char == " ":
            at += 1
        else:
            assert char in "()|*+?", gbnf[at:]
            out.append(char)
            at += 1
    return re.compile("".join(out))


@pytest.mark.parametrize(
    "low,high",
    [(0, 9), (1, 5), (0, 600000), (1, 250), (-5, 1234), (-120, -7), (37, 37), (99, 1001)],
)
def test_integer_ranges_are_exact(low, high):
    regex = as_regex(int_range(low, high))
    for value in range(low - 30, high + 31):
        assert bool(regex.fullmatch(str(value))) == (low <= value <= high), value
    assert not regex.fullmatch("007") and not regex.fullmatch("-0")


def test_half_open_ranges_have_no_leading_zeros():
    at_least_ten = as_regex(int_range(10, None))
    assert at_least_ten.fullmatch("10") and at_least_ten.fullmatch("123456789")
    assert not at_least_ten.fullmatch("9") and not at_least_ten.fullmatch("0123")
    at_most = as_regex(int_range(None, 3))
    assert at_most.fullmatch("-99999") and at_most.fullmatch("3") and not at_most.fullmatch("4")


@pytest.mark.parametrize(
    "schema,expected",
    [
        ({"minimum": 1, "maximum": 5}, (1, 5)),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, (1, 9)),
        ({"minimum": 0.5, "maximum": 2.5}, (1, 2)),
        ({"minimum": 0, "exclusiveMinimum": True, "maximum": 3}, (1, 3)),  # draft 4
        ({"maximum": 600000}, (None, 600000)),
        ({}, (None, None)),
    ],
)
def test_integer_bounds(schema, expected):
    assert int_bounds(schema) == expected


def rule_body(schema) -> str:
    return grammar_of(schema).splitlines()[1].split(" ::= ", 1)[1]


@pytest.mark.parametrize(
    "schema,good,bad",
    [
        ({"minimum": 0, "maximum": 2}, ["0", "0.5", "1.99", "2"], ["2.5", "-1", "3", "2.0"]),
        ({"minimum": 1}, ["1", "1.5", "99999"], ["0.5", "0", "-2"]),
        ({"maximum": 10}, ["-4.5", "9.99", "10"], ["10.5", "11"]),
        ({"minimum": 0.5, "maximum": 2.5}, ["1", "2"], ["0.5", "1.5", "3"]),  # whole numbers
    ],
)
def test_bounded_numbers(schema, good, bad):
    regex = as_regex(rule_body({"type": "number", **schema}))
    for text in good:
        assert regex.fullmatch(text), text
    for text in bad:
        assert not regex.fullmatch(text), text


PATTERNS = [
    ("^[a-z]+(-[a-z0-9]+)*$", ["abc", "a-b9-c"], ["", "Abc", "a-", "-a"]),
    ("^@[a-z]+$", ["@bob"], ["bob", "@"]),
    (r"^\d{3}-\d{4}$", ["555-1234"], ["5551234", "55-12345"]),
    (r"[A-Za-z][\w-]*", ["job_1-x", "a"], ["1job", ""]),
    (r"^(GET|POST)\s/\S+$", ["GET /a", "POST /b/c"], ["PUT /a", "GET a"]),
    (r'^[^"\\]{1,3}$', ["ab", "x y"], ["", "abcd"]),
    (r"^a.c$", ["abc", 'a"c'], ["ac"]),
]


@pytest.mark.parametrize("pattern,good,bad", PATTERNS)
def test_patterns_translate_to_what_they_match(pattern, good, bad):
    body = Pattern(pattern, raw=False).translate()
    assert body is not None
    regex = as_regex(body)
    for text in good:
        assert regex.fullmatch(json.dumps(text)[1:-1]), text
        assert re.search(pattern, text)
    for text in bad:
        assert not regex.fullmatch(json.dumps(text)[1:-1]), text


def test_json_escapes_in_patterns_are_written_escaped():
    regex = as_regex(Pattern(r'^"[\n\\]"$', raw=False).translate())
    assert regex.fullmatch(r"\"\n\"") and regex.fullmatch(r"\"\\\"")
    assert not regex.fullmatch('""')


@pytest.mark.parametrize(
    "pattern", [r"(?=a)b", r"(a)\1", r"\bword\b", "(?i)abc", "a^b", "[[:alpha:]]"]
)
def test_untranslatable_patterns_are_none(pattern):
    assert Pattern(pattern, raw=False).translate() is None


def test_untranslatable_pattern_relaxes_to_any_string():
    grammar = grammar_of({"type": "string", "pattern": "(?=x)y"})
    assert compiles(grammar) and "char*" in grammar


def test_objects_keep_schema_order_with_optional_members():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
        "required": ["b"],
    }
    grammar = grammar_of(schema)
    assert compiles(grammar)
    # b is required, a and c optional: {"b"..}, {"a"..,"b"..}, {"b"..,"c"..}, {"a","b","c"}
    assert grammar.index('"\\"a\\":"') < grammar.index('"\\"b\\":"') < grammar.index('"\\"c\\":"')


def test_strings_never_hold_raw_control_characters_or_lone_surrogates():
    grammar = grammar_of({"type": "string"})
    char = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char and r"\x7F" in char
    assert "[dD] [0-7]" in char  # \uD800-\uDFFF are never written


@pytest.mark.parametrize(
    "schema,fragments",
    [
        ({"enum": ["a", 1, None]}, ['"\\"a\\""', '"1"', '"null"']),
        ({"const": {"k": [1]}}, ['"{\\"k\\": [1]}"']),
        ({"type": ["string", "null"]}, ['"null"', "char*"]),
        ({"type": "string", "nullable": True}, ['"null"']),
        ({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, ['"true" | "false"']),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}, ["{0,2}"]),
        ({"type": "array", "maxItems": 0}, ['"[]"']),
        ({"type": "string", "minLength": 2, "maxLength": 4}, ["char{2,4}"]),
        ({"type": "string", "format": "date-time"}, ['"T"']),
        ({"type": "object", "additionalProperties": False}, ['"{}"']),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, ['":"']),
    ],
)
def test_keywords(schema, fragments):
    grammar = grammar_of(schema)
    assert compiles(grammar), grammar
    for fragment in fragments:
        assert fragment in grammar, (fragment, grammar)


def test_refs_resolve_and_recursion_becomes_a_recursive_rule():
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    grammar = grammar_of(schema)
    assert compiles(grammar)
    assert re.search(r"^node ::= ", grammar, re.M) and "(node (" in grammar


def test_all_of_is_merged():
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    grammar = grammar_of(schema)
    assert compiles(grammar) and '"\\"a\\":"' in grammar and '"\\"b\\":"' in grammar


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}},
        {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}},
        {"type": "string", "format": "email", "pattern": "^(?!x)"},
        {"type": "integer", "multipleOf": 7, "minimum": 10**30},
        {"type": "mystery"},
        {"properties": "not a dict", "required": [3]},
        {"type": "array", "items": [{"type": "string"}, True]},
        True,
    ],
)
def test_unsupported_schemas_are_relaxed_not_fatal(schema):
    grammar = grammar_of(schema)
    assert compiles(grammar), grammar


def test_response_format_grammar_falls_back_to_any_object():
    looping = {
        "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}},
        "$ref": "#/$defs/a",
    }
    assert compiles(json_grammar(looping, compiles))
    assert compiles(json_grammar(None, compiles)) and "object" in json_grammar(None, compiles)


def test_literals_escape_quotes_backslashes_and_control_characters():
    assert literal('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\x01"'
    assert compiles(f"root ::= {literal(chr(0x1F600) + 'é｜▁')}")


def test_compiles_says_no_to_broken_grammars():
    assert not compiles("root ::= missing-rule")
