"""What every family parser shares: the event sink, the request's tools, the Section protocol, and
the stream of one call's arguments (ToolCallStart, ToolCallDelta pieces, ToolCallEnd).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from agentport.chat.json_scanner import JsonScanner
from agentport.chat.json_schema import Expansion, resolve, value_types
from agentport.core import (
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
)

WHITESPACE = " \t\r\n"


def new_call_id() -> str:
    return uuid.uuid4().hex[:24]


class Out:
    """Collects the events of one feed; knows whether the answer has begun."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.tool_calls = 0
        self.strip = True  # drop leading whitespace: at the start, and after thinking
        self.answered = False  # text or a call has been emitted
        self.held: str | None = None  # whitespace after a call: text if more text follows

    def take(self) -> list[StreamEvent]:
        events, self.events = self.events, []
        return events

    def text(self, text: str) -> None:
        if not text:
            return
        if self.strip:
            text = text.lstrip()
        elif self.held is not None:
            text = self.held + text
            if text.isspace():
                self.held = text
                return
            self.held = None
        if text:
            self.strip = False
            self.answered = True
            self.events.append(TextDelta(text))

    def thinking(self, text: str) -> None:
        if text:
            self.events.append(ThinkingDelta(text))

    def start(self, name: str) -> int:
        index = self.tool_calls
        self.tool_calls += 1
        self.held = None
        self.strip = False
        self.answered = True
        self.events.append(ToolCallStart(index=index, id=new_call_id(), name=name))
        return index

    def delta(self, index: int, arguments: str) -> None:
        if arguments:
            self.events.append(ToolCallDelta(index=index, arguments=arguments))

    def end(self, index: int) -> None:
        self.events.append(ToolCallEnd(index=index))
        self.held = ""

    def call(self, name: str, arguments: str) -> None:
        """A whole call at once, when its arguments could not be streamed."""
        index = self.start(name)
        self.delta(index, arguments)
        self.end(index)


class ToolSet:
    """The request's tools: which names a call may use, and which parameters hold JSON values
    rather than text (read once, within the schema bounds: SchemaTooComplexError past them)."""

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        self.specs = {tool.name: tool for tool in tools}
        self.json_parameters = {tool.name: _json_parameters(tool) for tool in tools}

    def __bool__(self) -> bool:
        return bool(self.specs)

    def accepts(self, name: str) -> bool:
        """Any name when the request has no tools (the model's own markup still means a call)."""
        return not self.specs or name in self.specs

    def requires_arguments(self, tool: str) -> bool:
        """Whether the tool's schema names required properties (so `{}` cannot call it)."""
        spec = self.specs.get(tool)
        schema = spec.input_schema if spec else None
        return isinstance(schema, dict) and bool(schema.get("required"))

    def is_string(self, tool: str, parameter: str) -> bool:
        """Whether a parameter's value is text, not JSON: unknown parameters are text too."""
        return parameter not in self.json_parameters.get(tool, frozenset())


def _json_parameters(tool: ToolSpec) -> frozenset[str]:
    root = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    budget = Expansion(f"the input_schema of tool '{tool.name}'")
    properties = resolve(root, root, budget)
    properties = properties.get("properties") if isinstance(properties, dict) else None
    if not isinstance(properties, dict):
        return frozenset()
    out = set()
    for name, schema in properties.items():
        kinds = value_types(root, schema, budget) - {"null"}
        if kinds and not kinds & {"string", "any"}:
            out.add(name)
    return frozenset(out)


def as_arguments(text: str) -> str | None:
    """Compact JSON text of an arguments object given whole: an object, a string holding one,
    or null; None if it is none of these."""
    try:
        value = json.loads(text) if text.strip() else {}
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
    except ValueError:
        return None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Section:
    """A stretch of output that is not plain text: thinking, or one or more tool calls.

    `feed` consumes what it can decide and returns how many characters it used; it sets `done`
    when the stretch is over, or `failed` when it turns out to be plain text, which is allowed
    only while nothing has been emitted. `finish` is called if the stream ends inside it, with
    what is left unconsumed; False means the stretch was plain text after all.
    """

    done = False
    failed = False

    def feed(self, text: str) -> int:
        raise NotImplementedError

    def finish(self, rest: str) -> bool:
        return True


class StateSection(Section):
    """A Section read by a state machine: `state` names the method that reads on from an index,
    `_<state>(text, index)`, which returns the next index, or None to wait for more text."""

    state = ""

    def feed(self, text: str) -> int:
        index = 0
        while index < len(text) and not (self.done or self.failed):
            step = getattr(self, "_" + self.state)(text, index)
            if step is None:
                break
            index = step
        return index


class ArgumentStream:
    """One call's arguments object, streamed: ToolCallStart on creation, a delta per piece,
    ToolCallEnd when the object closes. A malformed or cut-off object is closed where it broke,
    so the pieces always add up to one valid JSON object; `broken` says it broke."""

    def __init__(self, out: Out, name: str) -> None:
        self.out = out
        self.scanner = JsonScanner()
        self.index = out.start(name)
        self.done = False
        self.failed = False  # never: a started call can only end
        self.broken = False

    def feed(self, text: str) -> int:
        used, piece = self.scanner.feed(text)
        self.out.delta(self.index, piece)
        if self.scanner.done:
            self.out.end(self.index)
            self.done = True
        elif self.scanner.failed:
            self.close()
        return used

    def close(self) -> None:
        if not self.done:
            self.out.delta(self.index, self.scanner.closing())
            self.out.end(self.index)
            self.done = True
            self.broken = not self.scanner.done


def skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in WHITESPACE:
        index += 1
    return index


def match_at(text: str, index: int, markers: tuple[str, ...]) -> str | None:
    """The marker that starts at `index`; "" if the text ends inside one; None if none does."""
    rest = text[index:]
    for marker in markers:
        if rest.startswith(marker):
            return marker
    if any(marker.startswith(rest) for marker in markers):
        return ""
    return None
