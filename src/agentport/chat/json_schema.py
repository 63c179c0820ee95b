"""JSON Schema reading shared by the call parsers and the grammar builder: local `$ref`
resolution, `allOf` flattening, the types a schema allows, and the bounds on how far one
schema may expand.

A tool definition is the client's data: a few kilobytes of `$defs` that point at each other
through `allOf` expand exponentially. Every walk through `$ref`s and nesting takes an
`Expansion`, which counts `$ref` visits and depth and raises `SchemaTooComplexError` (a 400
that names the bound) past them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from agentport.errors import SchemaTooComplexError

TYPES = ("string", "integer", "number", "boolean", "null", "object", "array")
MAX_REF_VISITS = 2000  # $refs followed while reading one schema
MAX_DEPTH = 64  # nesting of schemas inside schemas (properties, items, allOf, anyOf, $ref)


class Expansion:
    """The budget of one walk through a schema document."""

    def __init__(self, what: str = "schema") -> None:
        self.what = what
        self.ref_visits = 0
        self.depth = 0

    def visit_ref(self) -> None:
        self.ref_visits += 1
        if self.ref_visits > MAX_REF_VISITS:
            raise SchemaTooComplexError(self.what, f"more than {MAX_REF_VISITS} $ref visits")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SchemaTooComplexError(self.what, f"nesting deeper than {MAX_DEPTH}")

    def leave(self) -> None:
        self.depth -= 1


def resolve_pointer(root: Any, ref: str) -> Any:
    """The target of a local `$ref` ("#", "#/$defs/Item"; `~0`, `~1` and percent escapes
    decoded), or None for a remote or missing one."""
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def resolve(root: Any, schema: Any, budget: Expansion) -> Any:
    """`schema`, or what its `$ref` points to (None if unresolvable), following chains."""
    seen: set[str] = set()
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if ref in seen:
            return None
        seen.add(ref)
        budget.visit_ref()
        schema = resolve_pointer(root, ref)
    return schema


def flatten(root: Any, schema: dict[str, Any], budget: Expansion) -> dict[str, Any]:
    """`allOf` merged into one schema, its parts' `$ref`s resolved (a part that refers back to
    a schema being flattened adds nothing)."""
    return _flatten(root, schema, budget, ())


def _flatten(
    root: Any, schema: dict[str, Any], budget: Expansion, active: tuple[str, ...]
) -> dict[str, Any]:
    parts = schema.get("allOf")
    if not isinstance(parts, list):
        return schema
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    budget.enter()
    for part in parts:
        trail = active
        if isinstance(part, dict) and isinstance(part.get("$ref"), str):
            if part["$ref"] in active:
                continue
            budget.visit_ref()
            trail = (*active, part["$ref"])
            part = resolve_pointer(root, part["$ref"]) or {}
        if isinstance(part, dict):
            merged = merge(merged, _flatten(root, part, budget, trail))
    budget.leave()
    return merged


def merge(base: dict[str, Any], extra: Any) -> dict[str, Any]:
    """`extra` laid over `base`; properties merged and required lists joined."""
    if not isinstance(extra, dict):
        return base
    out = {**base, **extra}
    if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
        out["properties"] = {**base["properties"], **extra["properties"]}
    if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
        out["required"] = list(dict.fromkeys(base["required"] + extra["required"]))
    if "type" in base and "type" in extra and "anyOf" not in extra:
        out["type"] = extra["type"]
    return out


def types(schema: dict[str, Any]) -> list[str]:
    """The JSON types a schema allows, "any" for all; `nullable` adds null."""
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds = [declared]
    elif isinstance(declared, list) and declared:
        kinds = [t for t in declared if isinstance(t, str)]
    elif {"properties", "required", "additionalProperties"} & schema.keys():
        kinds = ["object"]
    elif {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
        kinds = ["array"]
    elif {"minLength", "maxLength", "pattern", "format"} & schema.keys():
        kinds = ["string"]
    elif {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
        kinds = ["number"]
    else:
        kinds = ["any"]
    kinds = [t if t in TYPES else "any" for t in kinds]
    if schema.get("nullable") is True and "null" not in kinds:
        kinds.append("null")
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    return list(dict.fromkeys(kinds))


def value_types(root: Any, schema: Any, budget: Expansion) -> set[str]:
    """The types a value valid against `schema` may take, through `$ref`, `allOf`, `anyOf` and
    `oneOf`; an untyped `enum` gives "string" or "json" per value; "any" when unconstrained."""
    schema = resolve(root, schema, budget)
    if not isinstance(schema, dict):
        return {"any"}
    schema = flatten(root, schema, budget)
    options = [o for key in ("anyOf", "oneOf") for o in schema.get(key) or () if o is not None]
    kinds: set[str] = set()
    if "type" in schema or not options:
        kinds = set(types(schema))
    if "type" not in schema and isinstance(schema.get("enum"), list) and schema["enum"]:
        kinds = {"string" if isinstance(v, str) else "json" for v in schema["enum"]}
    budget.enter()
    for option in options:
        kinds |= value_types(root, option, budget)
    budget.leave()
    return kinds
