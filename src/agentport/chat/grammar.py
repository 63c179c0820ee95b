"""JSON schema -> llama.cpp grammar (GBNF), for constrained tool calls and structured output.

`SchemaRules` turns a schema into GBNF rules for the JSON values valid against it. It covers
what agent tools use: objects (required and optional properties, kept in schema order), enums,
const, arrays (items, prefixItems, minItems / maxItems), anyOf / oneOf / allOf, type lists and
`nullable`, integers and numbers (bounds as integer ranges), booleans, null, strings (length
bounds, date / time / uuid formats, and a subset of `pattern`), free-form objects
(`additionalProperties`), and local `$ref`s (a recursive one becomes a recursive rule). What it
cannot honour is relaxed to the nearest wider grammar (an untranslatable pattern: any string; an
unresolvable `$ref`: any value); so a generated value can only fail validation through a keyword
that is relaxed (multipleOf, uniqueItems, ...). A schema that expands past a bound (`$ref`
visits and depth in `json_schema.py`, rules and characters here) is SchemaTooComplexError.

Whitespace is at most one space after `:` and `,`, strings never hold raw control characters,
and `\\u` escapes never encode a lone surrogate: each keeps a small model on a short path and
the output acceptable to every JSON parser. Whether the engine accepts a grammar is the caller's
`compiles` function (the engine side owns its grammar library). The tool-call grammars of each
model family are built on this in `call_format.py` and `families/`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from agentport.chat.json_schema import Expansion, flatten, merge, resolve_pointer, types
from agentport.errors import SchemaTooComplexError

log = logging.getLogger("agentport.chat")

ANY_OBJECT: dict[str, Any] = {"type": "object"}
MAX_DIGITS = 16  # integer digits; a bounded range may need fewer
MAX_REPEAT = 256  # larger bounds on items or characters are treated as unbounded
MAX_RULES = 20_000  # rules in one grammar
MAX_GRAMMAR_CHARS = 2_000_000  # characters of rule bodies in one grammar
SPACE = '" "?'
# A character of a JSON string: no quote, backslash or control character raw; escapes, but no
# \u escape of a lone surrogate.
JSON_CHAR = (
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} '
    r"| [dD] [0-7] [0-9a-fA-F]{2}))"
)
FORMATS = {
    "date": r'[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
    "time": (
        r'([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? '
        r'("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])'
    ),
    "uuid": r'[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}',
}
FORMATS["date-time"] = f'{FORMATS["date"]} "T" {FORMATS["time"]}'
_RULE_NAME = re.compile(r"[^a-zA-Z0-9-]+")


class Rules:
    """The rules of one grammar under construction: unique names, identical bodies shared."""

    def __init__(self, what: str = "the schema") -> None:
        self.what = what
        self.bodies: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self.size = 0

    def add(self, name: str, body: str) -> str:
        known = self._by_body.get(body)
        if known is not None:
            return known
        rule = self.reserve(name)
        self.define(rule, body)
        return rule

    def reserve(self, name: str) -> str:
        """A fresh rule name, to define later (a rule that refers to itself)."""
        base = _RULE_NAME.sub("-", name).strip("-") or "r"
        rule, n = base, 1
        while rule in self.bodies or rule == "root":
            rule, n = f"{base}-{n}", n + 1
        if len(self.bodies) >= MAX_RULES:
            raise SchemaTooComplexError(self.what, f"its grammar passes {MAX_RULES} rules")
        self.bodies[rule] = ""
        return rule

    def define(self, rule: str, body: str) -> None:
        self.size += len(body)
        if self.size > MAX_GRAMMAR_CHARS:
            bound = f"its grammar passes {MAX_GRAMMAR_CHARS} characters"
            raise SchemaTooComplexError(self.what, bound)
        self.bodies[rule] = body
        self._by_body.setdefault(body, rule)

    def grammar(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{rule} ::= {body}" for rule, body in self.bodies.items()]
        return "\n".join(lines) + "\n"


def literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def repeat(low: int, high: int | None) -> str:
    """A GBNF repetition suffix for low..high (None: unbounded)."""
    if high is None:
        return "*" if low == 0 else "+" if low == 1 else f"{{{low},}}"
    if low == high:
        return "" if low == 1 else f"{{{low}}}"
    return "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"


class SchemaRules:
    """GBNF rules for values valid against the schemas of one document (a tool's input_schema:
    its `$ref`s resolve against `root`), within the bounds of one `Expansion`."""

    def __init__(self, rules: Rules, root: Any) -> None:
        self.rules = rules
        self.root = root
        self.budget = Expansion(rules.what)
        self._refs: dict[str, str] = {}
        self._any: str | None = None
        self._any_object = ""

    # --- JSON values ---------------------------------------------------------------------------

    def value(self, schema: Any, name: str) -> str:
        """A rule (or a parenthesised expression) for JSON text valid against `schema`."""
        if not isinstance(schema, dict):
            return self.any_value()
        self.budget.enter()
        try:
            return self._value(schema, name)
        finally:
            self.budget.leave()

    def resolve(self, ref: str) -> Any:
        """The target of a `$ref` in this document, counted against the budget."""
        self.budget.visit_ref()
        return resolve_pointer(self.root, ref)

    def _value(self, schema: dict[str, Any], name: str) -> str:
        if isinstance(schema.get("$ref"), str):
            return self._ref(schema["$ref"], name)
        schema = flatten(self.root, schema, self.budget)
        alternatives = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(alternatives, list) and alternatives:
            base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            rules = [
                self.value(merge(base, alt), f"{name}-{i}") for i, alt in enumerate(alternatives)
            ]
            return self._union(name, rules)
        if "const" in schema:
            return literal(json.dumps(schema["const"], ensure_ascii=False))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            values = [literal(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]]
            return self._union(name, values)
        typed = [
            self._typed(t, schema, f"{name}-{t}" if t != "any" else name) for t in types(schema)
        ]
        return self._union(name, typed)

    def any_value(self) -> str:
        if self._any is None:
            value, obj, arr = (self.rules.reserve(n) for n in ("value", "object", "array"))
            string, number = self._string({}, "string"), self._number({}, "number")
            kv = f'{string} ":" {SPACE} {value}'
            self.rules.define(
                value, f'{obj} | {arr} | {string} | {number} | "true" | "false" | "null"'
            )
            self.rules.define(obj, f'"{{" ({kv} ("," {SPACE} {kv})*)? "}}"')
            self.rules.define(arr, f'"[" ({value} ("," {SPACE} {value})*)? "]"')
            self._any, self._any_object = value, obj
        return self._any

    def _typed(self, kind: str, schema: dict[str, Any], name: str) -> str:
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            return self.rules.add(name, int_range(*int_bounds(schema)))
        if kind == "number":
            return self._number(schema, name)
        if kind == "boolean":
            return self.rules.add("boolean", '"true" | "false"')
        if kind == "null":
            return '"null"'
        if kind == "object":
            return self._object(schema, name)
        if kind == "array":
            return self._array(schema, name)
        return self.any_value()

    def _union(self, name: str, alternatives: list[str]) -> str:
        unique = list(dict.fromkeys(alternatives))
        return unique[0] if len(unique) == 1 else self.rules.add(name, " | ".join(unique))

    def _string(self, schema: dict[str, Any], name: str) -> str:
        if isinstance(schema.get("pattern"), str):
            body = Pattern(schema["pattern"], raw=False).translate()
            if body is not None:
                return self.rules.add(name, f'"\\"" {body} "\\""')
            log.info("pattern %r relaxed to any string", schema["pattern"])
        if schema.get("format") in FORMATS:
            fmt = schema["format"]
            return self.rules.add(f"{fmt}-string", f'"\\"" {FORMATS[fmt]} "\\""')
        char = self.rules.add("char", JSON_CHAR)
        low, high = length_bounds(schema, "minLength", "maxLength")
        return self.rules.add(name, f'"\\"" {char}{repeat(low, high)} "\\""')

    def _number(self, schema: dict[str, Any], name: str) -> str:
        fraction = f'("." [0-9]{{1,{MAX_DIGITS}}})?'
        low, high = int_bounds(schema)
        if low is None and high is None:
            any_number = f'"-"? ("0" | [1-9] [0-9]{{0,{MAX_DIGITS - 1}}}) {fraction}'
            return self.rules.add("number", any_number)
        if (low is not None and high is not None and low > high) or not _decimal_bounds(schema):
            return self.rules.add(name, int_range(low, high))  # whole numbers within bounds
        if high is None:
            return self.rules.add(name, f"{int_range(low, None)} {fraction}")
        below = f"{int_range(low, high - 1)} {fraction}" if low is None or low < high else ""
        return self.rules.add(name, " | ".join(b for b in (below, literal(str(high))) if b))

    def _object(self, schema: dict[str, Any], name: str) -> str:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        keys = list(properties) + [r for r in dict.fromkeys(required) if r not in properties]
        if not keys:
            return self._map(schema, name)
        members = [
            self.rules.add(
                f"{name}-{key}-kv",
                f"{literal(json.dumps(key, ensure_ascii=False) + ':')} {SPACE} "
                + self.value(properties.get(key, {}), f"{name}-{key}"),
            )
            for key in keys
        ]
        body = self._members(members, [key in required for key in keys], name)
        return self.rules.add(name, f'"{{" {body} "}}"')

    def _members(self, members: list[str], required: list[bool], name: str) -> str:
        """The members in order, comma-separated, each optional one present or not."""
        rest = first = ""  # what may follow member i once one was written / while none was
        for i in reversed(range(len(members))):
            member, tail = members[i], f" {rest}" if rest else ""
            if required[i]:
                new_first = f"{member}{tail}"
                new_rest = f'"," {SPACE} {member}{tail}'
            else:
                new_first = f"{member}{tail} | {first}" if first else f"({member}{tail})?"
                new_rest = f'("," {SPACE} {member})?{tail}'
            first = self.rules.add(f"{name}-from-{i}", new_first)
            if i:
                rest = self.rules.add(f"{name}-after-{i}", new_rest)
        return first

    def _map(self, schema: dict[str, Any], name: str) -> str:
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return literal("{}")
        low = 1 if _int(schema.get("minProperties"), 0) > 0 else 0
        if not isinstance(extra, dict) and not low:
            self.any_value()
            return self._any_object
        value = self.value(extra if isinstance(extra, dict) else {}, f"{name}-value")
        kv = self.rules.add(f"{name}-kv", f'{self._string({}, "string")} ":" {SPACE} {value}')
        members = f'{kv} ("," {SPACE} {kv})*'
        return self.rules.add(name, f'"{{" {members if low else f"({members})?"} "}}"')

    def _array(self, schema: dict[str, Any], name: str) -> str:
        items = schema.get("items", True)
        prefix = schema.get("prefixItems", items if isinstance(items, list) else None)
        if isinstance(prefix, list) and prefix:
            values = [self.value(s, f"{name}-{i}") for i, s in enumerate(prefix)]
            return self.rules.add(name, '"[" ' + f' "," {SPACE} '.join(values) + ' "]"')
        item = self.value(items if isinstance(items, dict) else {}, f"{name}-item")
        low, high = length_bounds(schema, "minItems", "maxItems")
        if high == 0:
            return literal("[]")
        more = f'("," {SPACE} {item}){repeat(max(low - 1, 0), None if high is None else high - 1)}'
        body = f"{item} {more}" if low else f"({item} {more})?"
        return self.rules.add(name, f'"[" {body} "]"')

    # --- schema plumbing -----------------------------------------------------------------------

    def _ref(self, ref: str, name: str) -> str:
        if ref in self._refs:
            return self._refs[ref]
        target = self.resolve(ref)
        if target is None:
            log.info("$ref %r not resolvable; relaxed to any value", ref)
            return self.any_value()
        rule = self.rules.reserve(ref.rsplit("/", 1)[-1] or name)
        self._refs[ref] = rule
        self.rules.define(rule, self.value(target, f"{rule}-def"))
        return rule


def _int(value: Any, default: int) -> int:
    return (
        int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def length_bounds(schema: dict[str, Any], low_key: str, high_key: str) -> tuple[int, int | None]:
    low = max(_int(schema.get(low_key), 0), 0)
    high = schema.get(high_key)
    high = _int(high, -1) if high is not None else None
    if high is not None and (high < low or high > MAX_REPEAT):
        high = None
    return min(low, MAX_REPEAT), high


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _decimal_bounds(schema: dict[str, Any]) -> bool:
    """Whether numbers with a fraction can be written within the bounds simply: inclusive,
    whole bounds, none below zero."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema or "exclusiveMaximum" in schema:
        return False
    whole = all(v is None or (_number_or_none(v) is not None and v == int(v)) for v in (low, high))
    return whole and (low is None or low >= 0)


def int_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The smallest and largest integers a schema's bounds allow (None: unbounded)."""
    low, high = _number_or_none(schema.get("minimum")), _number_or_none(schema.get("maximum"))
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    lo = None if low is None else math.ceil(low)
    hi = None if high is None else math.floor(high)
    if exclusive_low is True and low is not None:  # draft 4: a flag on minimum
        lo = math.floor(low) + 1
    elif _number_or_none(exclusive_low) is not None:
        bound = math.floor(exclusive_low) + 1
        lo = bound if lo is None else max(lo, bound)
    if exclusive_high is True and high is not None:
        hi = math.ceil(high) - 1
    elif _number_or_none(exclusive_high) is not None:
        bound = math.ceil(exclusive_high) - 1
        hi = bound if hi is None else min(hi, bound)
    limit = 10**MAX_DIGITS - 1
    lo = None if lo is None or lo < -limit else min(lo, limit)
    hi = None if hi is None or hi > limit else max(hi, -limit)
    return lo, hi


def int_range(low: int | None, high: int | None) -> str:
    """GBNF for the integers in low..high (None: unbounded), without leading zeros."""
    if low is not None and high is not None and low > high:
        low, high = high, low
    parts = []
    if high is None or high >= 0:
        parts.append(natural_range(max(low, 0) if low is not None else 0, high))
    if low is None or low < 0:
        smallest = 1 if high is None or high >= 0 else -high
        parts.append('"-" ' + natural_range(smallest, None if low is None else -low))
    return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"


def natural_range(low: int, high: int | None) -> str:
    """GBNF for the integers low..high >= 0 (None: up to MAX_DIGITS digits)."""
    alternatives = []
    shortest = len(str(low))
    longest = len(str(high)) if high is not None else shortest
    for digits in range(shortest, longest + 1):
        lo = low if digits == shortest else 10 ** (digits - 1)
        hi = high if high is not None and digits == longest else 10**digits - 1
        alternatives.append(_same_length(str(lo), str(hi)))
    if high is None and shortest < MAX_DIGITS:
        alternatives.append(f"[1-9] [0-9]{{{shortest},{MAX_DIGITS - 1}}}")
    return alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")"


def _same_length(low: str, high: str) -> str:
    """GBNF for the digit strings of one length from low to high."""
    if low == high:
        return literal(low)
    rest = len(low) - 1
    if rest == 0:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return f"{literal(low[0])} {_same_length(low[1:], high[1:])}"
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return f"[{low[0]}-{high[0]}] [0-9]{{{rest}}}"
    alternatives = [f"{literal(low[0])} {_same_length(low[1:], '9' * rest)}"]
    if int(high[0]) - int(low[0]) > 1:
        alternatives.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}] [0-9]{{{rest}}}")
    alternatives.append(f"{literal(high[0])} {_same_length('0' * rest, high[1:])}")
    return "(" + " | ".join(alternatives) + ")"


# --- regular expressions (JSON Schema `pattern`) -----------------------------------------------

Ranges = list[tuple[int, int]]
_CLASSES: dict[str, Ranges] = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [(0x09, 0x0D), (0x20, 0x20)],
}
_ESCAPES = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B, "0": 0x00}
_JSON_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x0C: "\\f"}
_JSON_UNSAFE: Ranges = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)]
_RAW_UNSAFE: Ranges = [(0x00, 0x08), (0x0B, 0x1F), (0x3C, 0x3C), (0x7F, 0x7F)]  # raw text: no "<"


class Unsupported(Exception):
    pass


class Pattern:
    """A subset of regular expressions -> GBNF for strings that match it in full (which also
    match it searched, as JSON Schema does). Literals, classes, `.`, groups, alternation and
    quantifiers translate; lookarounds, backreferences, word boundaries and inline flags do not.
    The GBNF is for the JSON-encoded string body, or with `raw` for the text itself."""

    def __init__(self, pattern: str, raw: bool) -> None:
        self.pattern, self.raw, self.at = pattern, raw, 0

    def translate(self) -> str | None:
        try:
            body = self._alternation()
            if self.at != len(self.pattern):
                raise Unsupported(self.pattern[self.at :])
        except (Unsupported, ValueError, IndexError):
            return None
        return body or '""'

    def _peek(self) -> str:
        return self.pattern[self.at] if self.at < len(self.pattern) else ""

    def _alternation(self) -> str:
        branches = [self._sequence()]
        while self._peek() == "|":
            self.at += 1
            branches.append(self._sequence())
        if len(branches) == 1:
            return branches[0]
        return "(" + " | ".join(b or '""' for b in branches) + ")"

    def _sequence(self) -> str:
        items: list[str] = []
        if self._peek() == "^":
            self.at += 1
        while self._peek() not in ("", "|", ")"):
            if self._peek() == "$" and self._at_sequence_end(self.at + 1):
                self.at += 1
                break
            atom = self._atom()
            items.append(self._quantified(atom))
        return " ".join(i for i in items if i)

    def _at_sequence_end(self, at: int) -> bool:
        return at >= len(self.pattern) or self.pattern[at] in "|)"

    def _atom(self) -> str:
        char = self._peek()
        self.at += 1
        if char == "(":
            if self._peek() == "?":
                self._group_prefix()
            inner = self._alternation()
            if self._peek() != ")":
                raise Unsupported("unbalanced group")
            self.at += 1
            return f"({inner or chr(34) * 2})"
        if char == "[":
            return self._class()
        if char == ".":
            return self._chars([(0x0A, 0x0A)], negated=True)
        if char == "\\":
            return self._escape(in_class=False)
        if char in "*+?{^$":
            if char == "{" and not re.match(r"\d+(,\d*)?\}", self.pattern[self.at :]):
                return self._chars([(ord(char), ord(char))], negated=False)
            raise Unsupported(char)
        return self._chars([(ord(char), ord(char))], negated=False)

    def _group_prefix(self) -> None:
        rest = self.pattern[self.at :]
        named = re.match(r"\?P?<[A-Za-z_]\w*>", rest)
        if rest.startswith("?:"):
            self.at += 2
        elif named:
            self.at += named.end()
        else:
            raise Unsupported("lookaround or flags")

    def _quantified(self, atom: str) -> str:
        char = self._peek()
        if char in ("*", "+", "?"):
            self.at += 1
            suffix = char
        elif char == "{" and (found := re.match(r"\{(\d+)(,(\d*))?\}", self.pattern[self.at :])):
            self.at += found.end()
            low = int(found.group(1))
            high = (
                low if found.group(2) is None else int(found.group(3)) if found.group(3) else None
            )
            if low > MAX_REPEAT:
                raise Unsupported("repeat count")
            if high is not None and high > MAX_REPEAT:
                high = None
            suffix = repeat(low, high)
        else:
            return atom
        if self._peek() in ("?", "+"):  # lazy / possessive: the same strings
            self.at += 1
        if not atom:
            return ""
        return f"({atom}){suffix}" if suffix else atom

    def _escape(self, in_class: bool) -> str | Ranges:
        char = self._peek()
        self.at += 1
        if char in _CLASSES:
            return _CLASSES[char] if in_class else self._chars(_CLASSES[char], negated=False)
        if char.lower() in _CLASSES and not in_class:
            return self._chars(_CLASSES[char.lower()], negated=True)
        if char in _ESCAPES:
            point = _ESCAPES[char]
        elif char in ("x", "u"):
            width = 2 if char == "x" else 4
            point = int(self.pattern[self.at : self.at + width], 16)
            self.at += width
        elif char.isalnum():
            raise Unsupported(f"\\{char}")  # \b, \B, \1, \A, \Z, \p, ...
        else:
            point = ord(char)
        return [(point, point)] if in_class else self._chars([(point, point)], negated=False)

    def _class(self) -> str:
        negated = self._peek() == "^"
        if negated:
            self.at += 1
        ranges: Ranges = []
        first = True
        while first or self._peek() != "]":
            if not self._peek():
                raise Unsupported("unbalanced class")
            first = False
            low = self._class_item()
            if self._peek() == "-" and self.pattern[self.at + 1 : self.at + 2] not in ("]", ""):
                self.at += 1
                high = self._class_item()
                if len(low) != 1 or len(high) != 1 or low[0][0] != low[0][1]:
                    raise Unsupported("class range")
                ranges.append((low[0][0], high[0][1]))
            else:
                ranges.extend(low)
        self.at += 1
        return self._chars(ranges, negated)

    def _class_item(self) -> Ranges:
        char = self._peek()
        self.at += 1
        if char == "\\":
            if self._peek() in "DWS" and self._peek():
                raise Unsupported("negated class inside a class")
            found = self._escape(in_class=True)
            assert isinstance(found, list)
            return found
        if char == "[" and self._peek() == ":":
            raise Unsupported("POSIX class")
        return [(ord(char), ord(char))]

    def _chars(self, ranges: Ranges, negated: bool) -> str:
        """GBNF for one character of the set (or of its complement), as it is written in the
        output: JSON escapes for quotes, backslashes and control characters."""
        unsafe = _RAW_UNSAFE if self.raw else _JSON_UNSAFE
        if negated:
            raw = "[^" + _class_body(ranges + unsafe) + "]"
            escapes = [] if self.raw else [e for p, e in _JSON_ESCAPES.items() if p in (0x22, 0x5C)]
            escapes = [e for e in escapes if not _contains(ranges, ord(json.loads(f'"{e}"')))]
        else:
            safe = _subtract(ranges, unsafe)
            raw = "[" + _class_body(safe) + "]" if safe else ""
            escapes = []
            if not self.raw:
                escapes = [e for p, e in _JSON_ESCAPES.items() if _contains(ranges, p)]
            elif _contains(ranges, 0x0A):
                raw = raw[:-1] + "\\n]" if raw else "[\\n]"
        options = ([raw] if raw else []) + [literal(e) for e in escapes]
        if not options:
            raise Unsupported("no character of this class can be written")
        return options[0] if len(options) == 1 else "(" + " | ".join(options) + ")"


def _contains(ranges: Ranges, point: int) -> bool:
    return any(low <= point <= high for low, high in ranges)


def _subtract(ranges: Ranges, removed: Ranges) -> Ranges:
    out = []
    for low, high in ranges:
        pieces = [(low, high)]
        for cut_low, cut_high in removed:
            pieces = [
                part
                for a, b in pieces
                for part in ((a, min(b, cut_low - 1)), (max(a, cut_high + 1), b))
                if part[0] <= part[1]
            ]
        out.extend(pieces)
    return out


def _class_body(ranges: Ranges) -> str:
    def char(point: int) -> str:
        if chr(point).isalnum() and point < 0x80:
            return chr(point)
        return (
            f"\\x{point:02X}"
            if point < 0x100
            else f"\\u{point:04X}"
            if point < 0x10000
            else (f"\\U{point:08X}")
        )

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


# --- whole grammars ------------------------------------------------------------------------------


def json_grammar(schema: dict[str, Any] | None, compiles: Callable[[str], bool]) -> str:
    """Any JSON object, or JSON valid against `schema` (relaxed to any object if `compiles`
    refuses it); SchemaTooComplexError past the expansion bounds."""
    if schema:
        rules = Rules("the response schema")
        try:
            grammar = rules.grammar(SchemaRules(rules, schema).value(schema, "value"))
            if compiles(grammar):
                return grammar
        except (RecursionError, ValueError, TypeError) as exc:
            log.warning("response schema not convertible to a grammar (%s); relaxing it", exc)
    rules = Rules()
    return rules.grammar(SchemaRules(rules, ANY_OBJECT).value(ANY_OBJECT, "value"))
