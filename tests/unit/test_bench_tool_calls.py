"""Tests of the tool-calls scenario's pure logic: BFCL types to JSON schema, validation, scoring
and the report."""

from __future__ import annotations

import json

import pytest

from agentport.bench.scenarios import bfcl, tool_calls
from agentport.errors import InvalidRequestError

TRIANGLE = {
    "name": "geometry.area",
    "description": "Area of a triangle.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "Base."},
            "height": {"type": "float", "description": "Height."},
            "unit": {"type": "string", "enum": ["cm", "m"], "default": "cm"},
        },
        "required": ["base", "height"],
    },
}

EVENT = {
    "name": "create_event",
    "description": "Create an event.",
    "parameters": {
        "type": "dict",
        "properties": {
            "start": {
                "type": "dict",
                "properties": {"date": {"type": "string"}, "time": {"type": "string"}},
                "required": ["date"],
            },
            "edits": {
                "type": "array",
                "items": {
                    "type": "dict",
                    "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                },
            },
            "route": {"type": "tuple", "items": {"type": "string"}},
            "value": {"type": "any", "description": "Anything."},
        },
        "required": ["start"],
    },
}


def _case(functions, truth=None, case_id="simple_0"):
    return bfcl.Case(case_id, [{"role": "user", "content": "q"}], functions, truth)


def _reply(*calls, error=None):
    return bfcl.Reply(calls=[bfcl.Call(n, a) for n, a in calls], error=error)


# ---------------------------------------------------------------------------- type mapping


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "dict"}, {"type": "object"}),
        ({"type": "float"}, {"type": "number"}),
        (
            {"type": "tuple", "items": {"type": "string"}},
            {"type": "array", "items": {"type": "string"}},
        ),
        ({"type": "any", "description": "x"}, {"description": "x"}),
        ({"type": "integer", "enum": [1, 2]}, {"type": "integer", "enum": [1, 2]}),
        ({"type": ["float", "string"]}, {"type": ["number", "string"]}),
        ({"type": ["any", "string"]}, {}),
        (
            {"anyOf": [{"type": "dict"}, {"type": "float"}]},
            {"anyOf": [{"type": "object"}, {"type": "number"}]},
        ),
    ],
)
def test_bfcl_types_become_json_schema(given, expected):
    assert bfcl.bfcl_to_json_schema(given) == expected


def test_nested_schemas_are_converted_and_property_names_left_alone():
    schema = bfcl.bfcl_to_json_schema(EVENT["parameters"])
    assert schema["type"] == "object"
    assert schema["properties"]["start"]["type"] == "object"
    assert schema["properties"]["edits"]["items"]["type"] == "object"
    assert schema["properties"]["route"] == {"type": "array", "items": {"type": "string"}}
    assert "type" not in schema["properties"]["value"]
    assert schema["required"] == ["start"]
    weird = bfcl.bfcl_to_json_schema({"type": "dict", "properties": {"type": {"type": "float"}}})
    assert weird["properties"] == {"type": {"type": "number"}}


def test_case_tools_use_wire_safe_names_and_keep_the_bfcl_name():
    (tool,) = bfcl.case_tools([TRIANGLE])
    assert (tool.name, tool.wire_name) == ("geometry.area", "geometry_area")
    assert tool.schema["properties"]["height"] == {"type": "number", "description": "Height."}
    (empty,) = bfcl.case_tools([{"name": "ping", "description": ""}])
    assert empty.schema == {"type": "object", "properties": {}}


# ---------------------------------------------------------------------------- cases


def test_cases_load_from_jsonl_with_answers_from_a_second_file(tmp_path):
    entry = {
        "id": "parallel_multiple_7",
        "question": [[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]],
        "function": [TRIANGLE],
    }
    data, answers = tmp_path / "d.jsonl", tmp_path / "a.jsonl"
    data.write_text(json.dumps(entry) + "\n\n" + json.dumps({**entry, "id": "simple_1"}) + "\n")
    truth = [{"geometry.area": {"base": [3], "height": [4.0]}}]
    answers.write_text(json.dumps({"id": "parallel_multiple_7", "ground_truth": truth}) + "\n")
    cases = bfcl.load_cases(data, answers)
    assert [c.id for c in cases] == ["parallel_multiple_7", "simple_1"]
    assert cases[0].category == "parallel_multiple"
    assert cases[0].messages[0] == {"role": "system", "content": "s"}
    assert cases[0].ground_truth == truth and cases[1].ground_truth is None
    assert len(bfcl.load_cases(data, limit=1)) == 1


def test_a_flat_message_list_is_one_turn():
    assert bfcl.first_turn([{"role": "user", "content": "hi", "extra": 1}]) == [
        {"role": "user", "content": "hi"}
    ]
    with pytest.raises(InvalidRequestError):
        bfcl.first_turn([])


def test_the_shipped_sample_is_valid_bfcl():
    cases = bfcl.load_cases(tool_calls.DEFAULT_DATA)
    assert len(cases) >= 20
    assert {"simple", "multiple", "parallel", "nested", "enum"} <= {c.category for c in cases}
    for case in cases:
        names = {fn["name"] for fn in case.functions}
        assert case.ground_truth, case.id
        assert all(next(iter(entry)) in names for entry in case.ground_truth), case.id
        for tool in bfcl.case_tools(case.functions):
            assert tool.schema["type"] == "object"


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"start": {"date": "2024-01-01"}}, True),
        ({"start": {"date": "d"}, "route": ["SFO", "JFK"], "value": None}, True),
        ({"start": {"date": "d"}, "edits": [{"old": "a", "new": "b"}]}, True),
        ({}, False),
        ({"start": {"time": "10:00"}}, False),
        ({"start": "tomorrow"}, False),
        ({"start": {"date": "d"}, "route": "SFO-JFK"}, False),
        ({"start": {"date": "d"}, "edits": [{"old": 1}]}, False),
    ],
)
def test_schema_validation(value, ok):
    schema = bfcl.bfcl_to_json_schema(EVENT["parameters"])
    assert (not bfcl.schema_errors(value, schema)) is ok


@pytest.mark.parametrize(
    ("value", "schema", "ok"),
    [
        (True, {"type": "integer"}, False),
        (3.0, {"type": "integer"}, True),
        (1, {"enum": [True]}, False),
        ("b", {"type": "string", "enum": ["a", "b"]}, True),
        ({"x": 1}, {"type": "object", "additionalProperties": False}, False),
        ({"x": 1}, {"type": "object", "additionalProperties": {"type": "string"}}, False),
        ([1, 2], {"type": "array", "maxItems": 1}, False),
        ("abc", {"type": "string", "pattern": "^a", "maxLength": 3}, True),
        (5, {"type": "number", "minimum": 6}, False),
        (None, {"type": ["string", "null"]}, True),
        (2, {"anyOf": [{"type": "string"}, {"type": "integer"}]}, True),
        (2, {"oneOf": [{"type": "number"}, {"type": "integer"}]}, False),
    ],
)
def test_validation_keywords(value, schema, ok):
    assert (not bfcl.schema_errors(value, schema)) is ok


# ---------------------------------------------------------------------------- BFCL answers


def test_standardize_is_bfcls_normal_form():
    assert bfcl.standardize("April 1, 2024") == bfcl.standardize("april 1,2024")
    assert bfcl.standardize("New-York_City") == "newyorkcity"
    assert bfcl.standardize("it's") == 'it"s'


TRIANGLE_TRUTH = {"geometry.area": {"base": [10], "height": [5.0], "unit": ["cm", ""]}}


@pytest.mark.parametrize(
    ("args", "ok"),
    [
        ({"base": 10, "height": 5}, True),  # int for float is fine, optional unit left out
        ({"base": 10, "height": 5.0, "unit": "CM"}, True),
        ({"base": 10, "height": 5.0, "unit": "m"}, False),
        ({"base": 10.0, "height": 5.0}, False),  # float for an integer is not
        ({"base": 10}, False),
        ({"base": 10, "height": 5, "color": "red"}, False),
        ({"base": True, "height": 5}, False),
    ],
)
def test_call_matches_like_bfcl(args, ok):
    assert bfcl.call_matches("geometry.area", args, TRIANGLE_TRUTH, TRIANGLE) is ok


def test_a_parameter_without_the_empty_option_is_needed():
    truth = {"geometry.area": {"base": [10], "height": [5.0], "unit": ["cm"]}}
    assert not bfcl.call_matches("geometry.area", {"base": 10, "height": 5}, truth, TRIANGLE)


def test_nested_dicts_lists_of_dicts_and_tuples_match():
    truth = {
        "create_event": {
            "start": [{"date": ["2024-05-10"], "time": ["10:00", ""]}],
            "edits": [[{"old": ["a b"], "new": ["c"]}], ""],
            "route": [["SFO", "JFK"]],
            "value": [42, "42"],
        }
    }
    args = {"start": {"date": "2024-05-10"}, "route": ["sfo", "jfk"], "value": 42}
    assert bfcl.call_matches("create_event", args, truth, EVENT)
    edits = {**args, "edits": [{"old": "A-B", "new": "c"}]}
    assert bfcl.call_matches("create_event", edits, truth, EVENT)
    assert not bfcl.call_matches("create_event", {**edits, "edits": []}, truth, EVENT)
    assert not bfcl.call_matches("create_event", {**args, "route": ["JFK", "SFO"]}, truth, EVENT)
    assert not bfcl.call_matches(
        "create_event", {**args, "start": {"date": "2024-05-10", "x": "y"}}, truth, EVENT
    )


def test_parallel_calls_match_in_any_order_once_each():
    truth = [
        {"geometry.area": {"base": [1], "height": [2.0]}},
        {"geometry.area": {"base": [3], "height": [4.0]}},
    ]
    a, b = ("geometry.area", {"base": 1, "height": 2}), ("geometry.area", {"base": 3, "height": 4})
    assert bfcl.calls_match([b, a], truth, [TRIANGLE])
    assert not bfcl.calls_match([a, a], truth, [TRIANGLE])
    assert not bfcl.calls_match([a], truth, [TRIANGLE])


# ---------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("[1]", None),
        ("{bad", None),
        ({"a": 1}, {"a": 1}),
        (3, None),
    ],
)
def test_parse_arguments(raw, parsed):
    assert bfcl.parse_arguments(raw) == parsed


def _verdicts(reply, case):
    scores = bfcl.score_reply(reply, bfcl.case_tools(case.functions), case)
    return tuple(
        scores[k] for k in ("well_formed", "existing_function", "schema_valid", "accurate")
    )


def test_score_levels():
    case = _case([TRIANGLE], [TRIANGLE_TRUTH])
    good = ("geometry_area", {"base": 10, "height": 5})
    assert _verdicts(_reply(good), case) == (True, True, True, True)
    assert _verdicts(_reply(("geometry_area", {"base": 9, "height": 5})), case) == (
        True,
        True,
        True,
        False,
    )
    assert _verdicts(_reply(("geometry_area", {"base": "10"})), case) == (True, True, False, False)
    assert _verdicts(_reply(("area", {"base": 10})), case) == (True, False, False, False)
    assert _verdicts(_reply(good, ("geometry_area", None)), case) == (False, False, False, False)
    assert _verdicts(_reply(), case) == (False, False, False, False)
    assert _verdicts(_reply(good), _case([TRIANGLE])) == (True, True, True, None)


def test_problems_say_what_went_wrong():
    case = _case([TRIANGLE])
    scores = bfcl.score_reply(
        _reply(error="APIStatusError: 500"), bfcl.case_tools([TRIANGLE]), case
    )
    assert scores["problems"] == ["APIStatusError: 500"]
    scores = bfcl.score_reply(_reply(), bfcl.case_tools([TRIANGLE]), case)
    assert scores["problems"] == ["no tool call"]
    scores = bfcl.score_reply(
        _reply(("geometry_area", {"base": "x", "height": 1})), bfcl.case_tools([TRIANGLE]), case
    )
    assert any("base" in p for p in scores["problems"])


def _record(case_id, well, exists, valid, accurate, seconds=1.0, error=None, stop="stop"):
    return {
        "id": case_id,
        "category": case_id.rpartition("_")[0],
        "reply": {"seconds": seconds, "error": error, "stop": stop},
        "scores": {
            "well_formed": well,
            "existing_function": exists,
            "schema_valid": valid,
            "accurate": accurate,
        },
    }


def test_summary_and_tables():
    records = [
        _record("simple_0", True, True, True, True, 1.0),
        _record("simple_1", True, True, False, False, 3.0, stop="length"),
        _record("parallel_0", False, False, False, None, 2.0, error="boom"),
        _record("parallel_1", True, False, False, False, 5.0),
    ]
    s = bfcl.summarize(records)
    assert (s["cases"], s["errors"], s["judged"]) == (4, 1, 3)
    assert (s["well_formed"], s["existing_function"], s["schema_valid"]) == (75.0, 50.0, 25.0)
    assert s["accuracy"] == pytest.approx(100 / 3)
    assert s["median_s"] == 2.5
    assert s["truncated"] == 25.0
    run = {"model": "m", "dialect": "openai", "tool_choice": "auto", "summary": s, "cases": records}
    (row,) = tool_calls.table_rows([run])
    assert row[:8] == ["m", "openai", "auto", 4, 1, "75.0", "50.0", "25.0"]
    assert row[8:10] == ["33.3 (of 3)", "25.0"]
    categories = tool_calls.category_rows([run])
    assert [r[3] for r in categories] == ["parallel", "simple"]
    assert categories[1][2:] == ["auto", "simple", 2, "50.0", "50.0"]


def test_markdown_report_has_both_tables():
    records = [_record("simple_0", True, True, True, None)]
    run = {
        "model": "m",
        "dialect": "anthropic",
        "tool_choice": "required",
        "summary": bfcl.summarize(records),
        "cases": records,
    }
    cfg = {"cases": 1, "data": "x.jsonl", "temperature": 0.0, "max_tokens": 8, "stream": False}
    text = tool_calls.render_markdown({"config": cfg, "runs": [run]})
    assert "| m | anthropic | required | 1 | 0 | 100.0 | 100.0 | 100.0 |  | 0.0 |" in text
    assert "| m | anthropic | required | simple | 1 | 100.0 |  |" in text
