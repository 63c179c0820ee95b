"""A request's tool calls in its model family's syntax: the grammar of complete calls, the prefix
of a forced call, and the family whose syntax the model is asked to use.

`calls_grammar` builds the GBNF of complete calls in a family's `CallFormat`: the name is one of
the tools and the arguments are valid for that tool's input_schema (`grammar.py`). A forced call
(tool_choice any / a named tool) starts the answer with `forced_prefix` and is generated under
the grammar from the first token; with tool_choice auto the grammar is lazy: it applies once the
model writes one of the format's triggers, and includes the trigger itself (a bare JSON call as
the whole answer, which every parser reads, is one of them). A tool whose schema the engine's
`compiles` refuses is relaxed to "any object" arguments (the others keep theirs); if even that
fails there is no grammar and the parser decides. A schema past the expansion bounds is
SchemaTooComplexError, never relaxed: its cost is the client's doing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import lru_cache

from agentport.chat.call_format import CallFormat, json_calls_body
from agentport.chat.families import PROMPT_FAMILY, call_format
from agentport.chat.grammar import ANY_OBJECT, Rules
from agentport.core import ChatRequest, ToolSpec

log = logging.getLogger("agentport.chat")

Compiles = Callable[[str], bool]  # whether the engine accepts a grammar


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
    *,
    compiles: Compiles,
) -> str | None:
    """GBNF for calls to `tools` (or to the one named `only`) in `family`'s syntax, from the
    first token after the forced prefix, or with `lazy` from the trigger on. None where no
    tool matches or no grammar can be built."""
    chosen = [t for t in tools if only is None or t.name == only]
    if not chosen:
        return None
    key = json.dumps([[t.name, t.input_schema] for t in chosen], default=str)
    return _cached_grammar(family, key, lazy, parallel, compiles)


@lru_cache(maxsize=64)
def _cached_grammar(
    family: str, key: str, lazy: bool, parallel: bool, compiles: Compiles
) -> str | None:
    fmt = call_format(family)
    tools = [ToolSpec(name, "", schema) for name, schema in json.loads(key)]
    grammar = _build(fmt, tools, lazy, parallel)
    if grammar is not None and compiles(grammar):
        return grammar
    relaxed = [_compilable(fmt, tool, compiles) for tool in tools]
    grammar = _build(fmt, relaxed, lazy, parallel)
    return grammar if grammar is not None and compiles(grammar) else None


def _compilable(fmt: CallFormat, tool: ToolSpec, compiles: Compiles) -> ToolSpec:
    """The tool, or the tool with any object as arguments if its schema defeats the grammar."""
    grammar = _build(fmt, [tool], lazy=False, parallel=False)
    if grammar is not None and compiles(grammar):
        return tool
    log.warning("the schema of tool %r is not convertible to a grammar; relaxing it", tool.name)
    return ToolSpec(tool.name, "", ANY_OBJECT)


def _build(fmt: CallFormat, tools: list[ToolSpec], lazy: bool, parallel: bool) -> str | None:
    rules = Rules("the tools' input schemas")
    try:
        body = fmt.body(tools, rules, parallel)
        if not lazy:
            return rules.grammar(body)
        if fmt.anywhere:  # or the bare JSON call that the JSON_START trigger opens
            return rules.grammar(f"{fmt.lazy_root(body)} | {json_calls_body(tools, rules, False)}")
        return rules.grammar(fmt.lazy_root(body))
    except (RecursionError, ValueError, TypeError) as exc:
        log.warning("tool schemas not convertible to a grammar (%s)", exc)
        return None
