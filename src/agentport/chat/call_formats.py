"""How each model family writes tool calls, and the grammar of those calls.

One `CallFormat` per family (the names of the parser modules in `chat/parsers/`):

    hermes       <tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>
    qwen3_coder  <tool_call>\\n<function=NAME>\\n<parameter=P>\\nVALUE\\n</parameter>\\n...
                 </function>\\n</tool_call>
    llama3       {"name": ..., "parameters": {...}}, or after <|python_tag|>
    mistral      [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]
    deepseek     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n
                 ```json\\n{...}\\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
    generic      {"name": ..., "arguments": {...}} as the whole answer

`calls_grammar` builds the GBNF of complete calls in that syntax: the name is one of the tools and
the arguments are valid for that tool's input_schema (`grammar.py`). A forced call (tool_choice
any / a named tool) starts the answer with `forced_prefix` and is generated under the grammar
from the first token; with tool_choice auto the grammar is lazy: it applies once the model writes
one of `triggers`, and includes the trigger itself (a bare JSON call as the whole answer, which
every parser reads, is one of them). A tool whose schema defeats the converter is
relaxed to "any object" arguments (the others keep theirs); if even that fails there is no
grammar and the parser decides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from agentport.chat.grammar import (
    ANY_OBJECT,
    SPACE,
    Pattern,
    Rules,
    SchemaRules,
    compiles,
    literal,
    resolve_pointer,
    types,
)
from agentport.core import ChatRequest, ToolSpec

log = logging.getLogger("agentport.chat")

PROMPT_FAMILY = "hermes"  # the format of `tools_prompt.py`, for templates without tool support
# A JSON call as the whole answer, from its start; fenced or in a list, as the parsers read it.
JSON_START = r'^\s*(?:```(?:json)?\s*|\[\s*)?(\{"name")(?::(?: ?"?)?)?$'

# (tools chosen, rules) -> the GBNF body of one or more calls, after the forced prefix
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


def call_format(family: str) -> CallFormat:
    """The call format of `family`; the documented prompt format for an unknown one."""
    return FORMATS.get(family) or FORMATS[PROMPT_FAMILY]


def prompt_family(family: str, native_tools: bool) -> str:
    """The family whose syntax the model is asked to use: its own where the template renders
    the tools, else the format of `tools_prompt.py`."""
    return family if native_tools else PROMPT_FAMILY


def forced_prefix(request: ChatRequest, family: str, named: bool = True) -> str:
    """What a forced call's answer starts with in `family`'s syntax ("" when no call is forced),
    naming the tool too when `named` (for a call generated without a grammar)."""
    choice = request.tool_choice
    if not request.tools or choice.mode not in ("any", "tool"):
        return ""
    fmt = call_format(family)
    if choice.mode == "tool" and choice.name and named:
        return fmt.named_prefix(choice.name)
    return fmt.forced_prefix


def calls_grammar(
    family: str,
    tools: list[ToolSpec],
    only: str | None = None,
    lazy: bool = False,
    parallel: bool = True,
) -> str | None:
    """GBNF for calls to `tools` (or to the one named `only`) in `family`'s syntax, from the
    first token after the forced prefix, or with `lazy` from the trigger on. None where no
    tool matches or no grammar can be built."""
    chosen = [t for t in tools if only is None or t.name == only]
    if not chosen:
        return None
    key = json.dumps([[t.name, t.input_schema] for t in chosen], default=str)
    return _cached_grammar(family, key, lazy, parallel)


@lru_cache(maxsize=64)
def _cached_grammar(family: str, key: str, lazy: bool, parallel: bool) -> str | None:
    fmt = call_format(family)
    tools = [ToolSpec(name, "", schema) for name, schema in json.loads(key)]
    grammar = _build(fmt, tools, lazy, parallel)
    if grammar is not None and compiles(grammar):
        return grammar
    relaxed = [_compilable(fmt, tool) for tool in tools]
    grammar = _build(fmt, relaxed, lazy, parallel)
    return grammar if grammar is not None and compiles(grammar) else None


def _compilable(fmt: CallFormat, tool: ToolSpec) -> ToolSpec:
    """The tool, or the tool with any object as arguments if its schema defeats the grammar."""
    grammar = _build(fmt, [tool], lazy=False, parallel=False)
    if grammar is not None and compiles(grammar):
        return tool
    log.warning("the schema of tool %r is not convertible to a grammar; relaxing it", tool.name)
    return ToolSpec(tool.name, "", ANY_OBJECT)


def _build(fmt: CallFormat, tools: list[ToolSpec], lazy: bool, parallel: bool) -> str | None:
    rules = Rules()
    try:
        body = fmt.body(tools, rules, parallel)
    except (RecursionError, ValueError, TypeError) as exc:
        log.warning("tool schemas not convertible to a grammar (%s)", exc)
        return None
    if not lazy:
        return rules.grammar(body)
    if fmt.anywhere:  # or the bare JSON call that JSON_START triggers
        return rules.grammar(f"{fmt.lazy_root(body)} | {_generic_body(tools, rules, False)}")
    return rules.grammar(fmt.lazy_root(body))


# --- shared pieces --------------------------------------------------------------------------------


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


def json_calls(tools: list[ToolSpec], rules: Rules, arguments_key: str, extra: str = "") -> str:
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


def _repeated(first: str, separator: str, parallel: bool) -> str:
    return f"{first} ({separator} {first})*" if parallel else first


# --- the families ---------------------------------------------------------------------------------


def _hermes_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    block = rules.add("block", f'{json_calls(tools, rules, "arguments")} "\\n</tool_call>"')
    return _repeated(block, '"\\n<tool_call>\\n"', parallel)


def _llama3_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    return json_calls(tools, rules, "parameters")


def _generic_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    return json_calls(tools, rules, "arguments")


def _mistral_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    call_id = f'"," {SPACE} "\\"id\\":" {SPACE} "\\"" [a-zA-Z0-9]{{9}} "\\""'
    call = json_calls(tools, rules, "arguments", extra=f" ({call_id})?")
    separator = f'"," {SPACE}'
    return f'" "? "[" {_repeated(call, separator, parallel)} "]"'


def _deepseek_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    calls = [
        rules.add(
            f"{tool.name}-call",
            literal(f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{tool.name}\n```json\n")
            + f' {arguments_rule(tool, rules)} "\\n```<｜tool▁call▁end｜>"',
        )
        for tool in tools
    ]
    call = rules.add("call", " | ".join(calls))
    calls_list = _repeated(call, '"\\n"', parallel)
    return f'{calls_list} "<｜tool▁calls▁end｜>"'


def _qwen3_coder_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    text = rules.add("xml-text", f"({text_without('</parameter>')})*")
    functions = [_qwen3_function(tool, rules, text) for tool in tools]
    function = rules.add("function", " | ".join(functions))
    block = rules.add("block", f'{function} "</function>\\n</tool_call>"')
    return _repeated(block, '"\\n<tool_call>\\n"', parallel)


def _qwen3_function(tool: ToolSpec, rules: Rules, text: str) -> str:
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
        target = resolve_pointer(values.root, schema["$ref"])
        schema = target if isinstance(target, dict) and "$ref" not in target else {}
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list) and options:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        alternatives = [
            _xml_value(values, {**rest, **o}, f"{name}-{i}", text)
            for i, o in enumerate(options)
            if isinstance(o, dict)
        ]
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


FORMATS: dict[str, CallFormat] = {
    f.family: f
    for f in (
        CallFormat(
            "hermes",
            "<tool_call>",
            "<tool_call>\n",
            _hermes_body,
            lambda name: '{"name": ' + json.dumps(name) + ', "arguments": ',
            stops=("<tool_call>",),
        ),
        CallFormat(
            "qwen3_coder",
            "<tool_call>",
            "<tool_call>\n",
            _qwen3_coder_body,
            lambda name: f"<function={name}>\n",
            stops=("<tool_call>",),
        ),
        CallFormat(
            "llama3",
            '{"name"',
            "",
            _llama3_body,
            lambda name: '{"name": ' + json.dumps(name) + ', "parameters": ',
            stops=("<|python_tag|>",),
            anywhere=False,
            also="<|python_tag|>",
        ),
        CallFormat(
            "mistral",
            "[TOOL_CALLS]",
            "[TOOL_CALLS]",
            _mistral_body,
            lambda name: ' [{"name": ' + json.dumps(name) + ', "arguments": ',
            stops=("[TOOL_CALLS]",),
        ),
        CallFormat(
            "deepseek",
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls▁begin｜>",
            _deepseek_body,
            lambda name: f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n",
            stops=("<｜tool▁calls▁begin｜>",),
        ),
        CallFormat(
            "generic",
            '{"name"',
            "",
            _generic_body,
            lambda name: '{"name": ' + json.dumps(name) + ', "arguments": ',
            anywhere=False,
        ),
    )
}
