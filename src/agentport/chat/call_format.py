"""What a model family's tool calls look like, as one `CallFormat` per family (exported as
CALL_FORMAT by each module of `chat/families/`), and the grammar pieces the families build their
calls' GBNF from: JSON call objects, arguments valid for a tool's input_schema, text that cannot
run into a closing tag, and repetition of calls.

A CallFormat holds the text that opens a call (`trigger`, for a lazy grammar), the prefix a
forced call starts with, the body of the calls' grammar after that prefix, and the texts that
end the answer when calls are forbidden.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from agentport.chat.grammar import ANY_OBJECT, SPACE, Rules, SchemaRules, literal
from agentport.chat.json_schema import types
from agentport.core import ToolSpec

# A JSON call as the whole answer, from its start; fenced or in a list, as the parsers read it.
JSON_START = r'^\s*(?:```(?:json)?\s*|\[\s*)?(\{"name")(?::(?: ?"?)?)?$'

# (tools chosen, rules, parallel) -> the GBNF body of one or more calls, after the forced prefix
CallsBody = Callable[[list[ToolSpec], Rules, bool], str]


@dataclass(frozen=True, slots=True)
class CallFormat:
    family: str
    trigger: str  # the text that opens a call
    forced_prefix: str  # starts a forced call's answer; the grammar goes on from there
    body: CallsBody = field(repr=False)
    named_opening: Callable[[str], str] = field(repr=False)  # the opening naming one tool
    stops: tuple[str, ...] = ()  # texts that end the answer when calls are forbidden
    anywhere: bool = True  # the trigger may come after text (else: only as the answer's start)
    also: str = ""  # a second trigger (a special token) that may open a call

    def named_prefix(self, name: str) -> str:
        """The forced prefix that also names the tool: for a forced call without a grammar."""
        return self.forced_prefix + self.named_opening(name)

    def triggers(self) -> list[tuple[str, str]]:
        """(text, pattern) pairs for a lazy grammar: the text where the vocabulary has it as one
        token, else the regex, matched against the end of the text so far (llama.cpp starts the
        grammar at its first group). What may follow the trigger inside the same token is only
        a start of the forced prefix's rest, so the grammar accepts it."""
        out = []
        if self.anywhere:
            tail = _optional_prefixes(self.forced_prefix[len(self.trigger) :])
            out.append((self.trigger, f"({regex_escape(self.trigger)}){tail}$"))
        if self.also:
            out.append((self.also, f"({regex_escape(self.also)})$"))
        return [*out, ("", JSON_START)]  # every parser also reads a bare JSON call as the answer

    def lazy_root(self, body: str) -> str:
        if self.also:
            return f"{literal(self.also)}? {body}"
        return f"{literal(self.forced_prefix)} {body}" if self.forced_prefix else body


def json_named_opening(arguments_key: str) -> Callable[[str], str]:
    """The opening of a JSON call object that names the tool, up to its arguments."""
    return lambda name: '{"name": ' + json.dumps(name) + f', "{arguments_key}": '


def regex_escape(text: str) -> str:
    """`text` as an ECMAScript regex matching it literally (llama.cpp uses std::regex)."""
    special = set(".^$|()*+?[]{}\\/")
    return "".join("\\" + c if c in special else "\\n" if c == "\n" else c for c in text)


def text_without(stop: str) -> str:
    """GBNF for one piece of text that cannot grow into `stop` (which starts with "<"):
    any character but "<" and control characters other than tab and newlines, or "<" and a
    start of `stop` broken off by another character."""
    rest = "[^<\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F]"
    nested = ""
    for char in reversed(stop[1:]):
        broken = f"[^{char}<]"
        nested = f"({broken} | {literal(char)} {nested})" if nested else broken
    return f'{rest} | "<" {nested}'


def _optional_prefixes(text: str) -> str:
    """A regex for any start of `text` ("" included)."""
    out = ""
    for char in reversed(text):
        out = f"(?:{regex_escape(char)}{out})?"
    return out


def arguments_rule(tool: ToolSpec, rules: Rules) -> str:
    """JSON arguments valid for the tool's input_schema (an object)."""
    schema = tool.input_schema or ANY_OBJECT
    if types(schema) == ["any"]:
        schema = {**schema, "type": "object"}
    elif "object" not in types(schema):  # arguments are an object, whatever the schema says
        schema = ANY_OBJECT
    return SchemaRules(rules, schema).value(schema, f"{tool.name}-args")


def json_call_rule(tools: list[ToolSpec], rules: Rules, arguments_key: str, extra: str = "") -> str:
    """A rule for one `{"name": ..., "<arguments_key>": {...}}` object, any of the tools."""
    alternatives = [
        rules.add(
            f"{tool.name}-call",
            f'"{{\\"name\\":" {SPACE} {literal(json.dumps(tool.name, ensure_ascii=False))} '
            f'"," {SPACE} {literal(json.dumps(arguments_key) + ":")} {SPACE} '
            f'{arguments_rule(tool, rules)}{extra} "}}"',
        )
        for tool in tools
    ]
    return rules.add("call", " | ".join(alternatives))


def json_calls_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    """One bare `{"name": ..., "arguments": {...}}` call: the generic body, and what a lazy
    grammar accepts as the whole answer in every family."""
    return json_call_rule(tools, rules, "arguments")


def repeated(first: str, separator: str, parallel: bool) -> str:
    """`first`, then (when `parallel`) any number of `separator first`."""
    return f"{first} ({separator} {first})*" if parallel else first
