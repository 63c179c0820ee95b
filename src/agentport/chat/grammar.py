"""JSON schema -> llama.cpp grammar (GBNF) for constrained tool calls.

A forced call (`tool_choice` any / a named tool) is generated under a grammar that accepts only
`{"name": <one of the tools>, "arguments": <JSON valid for that tool's input_schema>}`. The
conversion is llama-cpp-python's own `json_schema_to_gbnf`; a schema it cannot convert is
relaxed to "any object" rather than failing the request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agentport.core import ToolSpec

log = logging.getLogger("agentport.chat")

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def tool_call_grammar(tools: list[ToolSpec], only: str | None = None) -> str | None:
    chosen = [t for t in tools if only is None or t.name == only]
    if not chosen:
        return None
    try:
        return _convert({"anyOf": [_call_schema(t, t.input_schema) for t in chosen]})
    except Exception as exc:  # noqa: BLE001 - an odd schema must never fail the request
        log.warning("tool schema not convertible to a grammar (%s); relaxing it", exc)
    try:
        return _convert({"anyOf": [_call_schema(t, ANY_OBJECT) for t in chosen]})
    except Exception:  # noqa: BLE001
        return None


def json_grammar(schema: dict[str, Any] | None) -> str:
    """Any JSON object, or JSON valid against `schema` (relaxed to any object if unsupported)."""
    if schema:
        try:
            return _convert(schema)
        except Exception as exc:  # noqa: BLE001
            log.warning("response schema not convertible to a grammar (%s); relaxing it", exc)
    return _convert(ANY_OBJECT)


def _call_schema(tool: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": arguments or ANY_OBJECT},
        "required": ["name", "arguments"],
    }


# The converter lets raw control characters into strings, which JSON parsers refuse.
LOOSE_CHAR = 'char ::= [^"\\\\] |'
STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _convert(schema: dict[str, Any]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    return grammar.replace(LOOSE_CHAR, STRICT_CHAR)
