"""Qwen3-Coder family (also Qwen3.5): XML calls,

    <tool_call>
    <function=NAME>
    <parameter=P>
    VALUE
    </parameter>
    </function>
    </tool_call>

Values are text, except where the tool's schema says a parameter is a number, boolean, object or
array: then the value is JSON (Python's True / False / None accepted). The arguments' JSON text
is built as the model writes: `{` when the function opens, then `"P":"` and escaped pieces of a
text value as they arrive (a JSON-typed value goes out whole when complete), `}` when it closes.
One newline around each value is the template's, not the value's. JSON inside `<tool_call>`
(what a forced call under a grammar writes) is read as in the Hermes family.
"""

from __future__ import annotations

import json

from agentport.chat.call_format import CallFormat, repeated, text_without
from agentport.chat.grammar import Pattern, Rules, SchemaRules, literal
from agentport.chat.json_calls import JsonCallsSection
from agentport.chat.json_schema import types
from agentport.chat.sections import WHITESPACE, Out, StateSection, ToolSet, match_at
from agentport.chat.stream_parser import CALL_CLOSE, CALL_OPEN, Opener, StreamParser
from agentport.chat.stream_text import find_first, partial_suffix
from agentport.core import ToolSpec

MARKERS = ("<function=", "<parameter=")
DETECTION_ORDER = 10
NAME_HINTS = (r"qwen3[-_ .]?coder",)

FUNCTION_OPEN, FUNCTION_CLOSE = "<function=", "</function>"
PARAMETER_OPEN, PARAMETER_CLOSE = "<parameter=", "</parameter>"
TAGS = (FUNCTION_OPEN, FUNCTION_CLOSE, PARAMETER_OPEN, PARAMETER_CLOSE, CALL_CLOSE, CALL_OPEN)
VALUE_ENDS = (PARAMETER_CLOSE, PARAMETER_OPEN, FUNCTION_CLOSE, CALL_CLOSE)
# A JSON value may hold "</parameter>" inside a string; the closing tag that ends it follows a
# newline (as the grammar writes it, and the model).
JSON_VALUE_ENDS = ("\n" + PARAMETER_CLOSE, PARAMETER_OPEN, FUNCTION_CLOSE, CALL_CLOSE)
MAX_NAME = 256
PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def json_value(text: str) -> str:
    """A JSON-typed parameter's value as JSON text; text that is not JSON stays a string."""
    text = text.strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = PYTHON_LITERALS.get(text, text)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_text(piece: str) -> str:
    """A piece of a string value, escaped for the inside of a JSON string."""
    return json.dumps(piece, ensure_ascii=False)[1:-1]


class XmlCallSection(StateSection):
    """From `<tool_call>` to `</tool_call>`: one or more `<function=...>` blocks, or JSON."""

    def __init__(self, tools: ToolSet, out: Out) -> None:
        self.tools, self.out = tools, out
        self.state = "start"  # start | json | tag | name | opened | parameter | value | skip
        self.inner: JsonCallsSection | None = None
        self.function: str | None = None  # the call in progress
        self.index = -1
        self.members = 0  # parameters emitted in the call in progress
        self.parameter = ""
        self.as_string = True
        self.string_open = False  # a text value's opening quote is out
        self.buffered: list[str] = []  # a JSON-typed value, until it is complete
        self.calls = 0

    def finish(self, rest: str) -> bool:
        if self.inner is not None:
            return self.inner.finish(rest)
        if self.state == "opened":
            self._start_call()
        if self.function is not None:
            self._end_call()
        return self.calls > 0

    def _start(self, text: str, index: int) -> int:
        char = text[index]
        if char in WHITESPACE:
            return index + 1
        if char in "{[":
            self.inner = JsonCallsSection(self.tools, self.out, (CALL_CLOSE,))
            self.state = "json"
        else:
            self.state = "tag"
        return index

    def _json(self, text: str, index: int) -> int | None:
        used = self.inner.feed(text[index:])
        self.done, self.failed = self.inner.done, self.inner.failed
        return index + used if used or self.done or self.failed else None

    def _tag(self, text: str, index: int) -> int | None:
        if text[index] in WHITESPACE:
            return index + 1
        tag = match_at(text, index, TAGS)
        if tag == "":
            return None
        if tag is None or (tag == PARAMETER_OPEN and self.function is None):
            return self._stray(index)
        if tag in (FUNCTION_OPEN, FUNCTION_CLOSE, CALL_CLOSE) and self.function is not None:
            self._end_call()
        if tag == FUNCTION_OPEN:
            self.state = "name"
        elif tag == PARAMETER_OPEN:
            self.state = "parameter"
        elif tag == CALL_CLOSE:
            self.done = True
        return index + len(tag)

    def _name(self, text: str, index: int) -> int | None:
        name, end = self._read_name(text, index)
        if end is None:
            return None if name is None else self._stray(index)
        if not name or not self.tools.accepts(name):
            return self._stray(index)
        self.function, self.members = name, 0
        self.state = "opened"
        return end

    def _opened(self, text: str, index: int) -> int:
        """The call starts with what follows its function tag, so that a forced prefix ending
        in the tag (whose events the runtime does not see) emits nothing."""
        if text[index] in WHITESPACE:
            return index + 1
        self._start_call()
        self.state = "tag"
        return index

    def _start_call(self) -> None:
        self.index = self.out.start(self.function)
        self.out.delta(self.index, "{")
        self.calls += 1

    def _parameter(self, text: str, index: int) -> int | None:
        name, end = self._read_name(text, index)
        if end is None:
            return None if name is None else self._stray(index)
        self.parameter = name
        self.as_string = self.tools.is_string(self.function, name)
        if end < len(text) and text[end] == "\n":
            end += 1
        elif end == len(text):
            return None  # wait: the newline after the tag is the template's
        self.state = "value"
        return end

    def _read_name(self, text: str, index: int) -> tuple[str | None, int | None]:
        """(name, index after `>`); (None, None) to wait; ("", None) if it is no name."""
        end = text.find(">", index)
        if end == -1:
            return (None, None) if len(text) - index <= MAX_NAME else ("", None)
        name = text[index:end].strip()
        if "<" in name or "\n" in name:
            return "", None
        return name, end + 1

    def _value(self, text: str, index: int) -> int | None:
        rest = text[index:]
        ends = VALUE_ENDS if self.as_string else JSON_VALUE_ENDS
        found, marker = find_first(rest, ends)
        if found != -1:
            piece = rest[:found]
            self._put_value(piece[:-1] if piece.endswith("\n") else piece, last=True)
            self.state = "tag"
            return index + found + (len(marker) if marker.endswith(PARAMETER_CLOSE) else 0)
        end = len(rest) - partial_suffix(rest, ends)
        if rest[:end].endswith("\n"):
            end -= 1  # may be the newline before the closing tag
        if end <= 0:
            return None
        self._put_value(rest[:end], last=False)
        return index + end

    def _put_value(self, piece: str, last: bool) -> None:
        if not self.as_string:
            self.buffered.append(piece)
            if last:
                value = json_value("".join(self.buffered))
                self.buffered = []
                self.out.delta(self.index, self._member() + value)
            return
        out = ""
        if not self.string_open:
            out = self._member() + '"'
            self.string_open = True
        out += json_text(piece)
        if last:
            out += '"'
            self.string_open = False
        self.out.delta(self.index, out)

    def _member(self) -> str:
        comma = "," if self.members else ""
        self.members += 1
        return comma + json.dumps(self.parameter, ensure_ascii=False) + ":"

    def _end_call(self) -> None:
        closing = '"}' if self.string_open else "}"
        self.out.delta(self.index, closing)
        self.out.end(self.index)
        self.function, self.string_open, self.buffered = None, False, []

    def _stray(self, index: int) -> int:
        """Not the markup expected: plain text if nothing was emitted, else up to the end of the
        tool call is dropped."""
        if not self.calls:
            self.failed = True
            return index
        if self.function is not None:
            self._end_call()
        self.state = "skip"
        return index

    def _skip(self, text: str, index: int) -> int | None:
        rest = text[index:]
        found = rest.find(CALL_CLOSE)
        if found != -1:
            self.done = True
            return index + found + len(CALL_CLOSE)
        end = len(rest) - partial_suffix(rest, (CALL_CLOSE,))
        return index + end if end > 0 else None


class Parser(StreamParser):
    def openers(self) -> dict[str, Opener]:
        opens = super().openers()
        opens[CALL_OPEN] = lambda: XmlCallSection(self.tools, self.out)
        return opens


def calls_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    text = rules.add("xml-text", f"({text_without('</parameter>')})*")
    functions = [_function_rule(tool, rules, text) for tool in tools]
    function = rules.add("function", " | ".join(functions))
    block = rules.add("block", f'{function} "</function>\\n</tool_call>"')
    return repeated(block, '"\\n<tool_call>\\n"', parallel)


def _function_rule(tool: ToolSpec, rules: Rules, text: str) -> str:
    schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    names = list(properties) + [r for r in dict.fromkeys(required) if r not in properties]
    values = SchemaRules(rules, schema)
    parameters = []
    for name in names:
        value = _xml_value(values, properties.get(name, {}), f"{tool.name}-{name}", text)
        opening = literal(f"<parameter={name}>\n")
        parameter = rules.add(
            f"{tool.name}-{name}-parameter", f'{opening} {value} "\\n</parameter>\\n"'
        )
        parameters.append(parameter if name in required else f"{parameter}?")
    opening = literal(f"<function={tool.name}>\n")
    return rules.add(f"{tool.name}-function", " ".join([opening, *parameters]))


def _xml_value(values: SchemaRules, schema: object, name: str, text: str) -> str:
    """A parameter value as Qwen3-Coder writes it: strings raw, everything else as JSON."""
    if not isinstance(schema, dict):
        return text
    if isinstance(schema.get("$ref"), str):
        target = values.resolve(schema["$ref"])
        schema = target if isinstance(target, dict) and "$ref" not in target else {}
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list) and options:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        values.budget.enter()
        alternatives = [
            _xml_value(values, {**rest, **o}, f"{name}-{i}", text)
            for i, o in enumerate(options)
            if isinstance(o, dict)
        ]
        values.budget.leave()
        return values.rules.add(name, " | ".join(dict.fromkeys(alternatives)))
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        choices = [literal(v if isinstance(v, str) else json.dumps(v)) for v in schema["enum"]]
        return values.rules.add(name, " | ".join(dict.fromkeys(choices)))
    kinds = types(schema)
    alternatives = [_xml_typed(values, schema, kind, f"{name}-{kind}", text) for kind in kinds]
    return values.rules.add(name, " | ".join(dict.fromkeys(alternatives)))


def _xml_typed(values: SchemaRules, schema: dict, kind: str, name: str, text: str) -> str:
    if kind == "string" and isinstance(schema.get("pattern"), str):
        body = Pattern(schema["pattern"], raw=True).translate()
        return values.rules.add(name, body) if body else text
    if kind in ("string", "any"):
        return text
    return values.value({**schema, "type": kind}, name)


CALL_FORMAT = CallFormat(
    "qwen3_coder",
    "<tool_call>",
    "<tool_call>\n",
    calls_body,
    lambda name: f"<function={name}>\n",
    stops=("<tool_call>",),
)
