"""Hermes / Qwen 2.5 family: `<tool_call>{json}</tool_call>`, `<think>...</think>`, and bare
JSON calls (`{"name": ..., "arguments": ...}` as the whole answer).

The parser works on a stream: it holds back text that might be the start of a marker, never
emits markup as text, and turns malformed or truncated calls back into plain text.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from agentport.chat.stream_text import find_first, partial_suffix
from agentport.core import (
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)

MARKERS = ("<tool_call>",)

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TEXT_MARKERS = (CALL_OPEN, THINK_OPEN)
BARE_STARTS = ("{", "```", "[{")


def new_call_id() -> str:
    return uuid.uuid4().hex[:24]


class Parser:
    def __init__(self, tool_names: list[str]) -> None:
        self.tool_names = set(tool_names)
        self.state = "text"  # text | think | call | bare
        self.buffer = ""
        self.at_start = True  # nothing but whitespace emitted so far
        self.tool_calls = 0

    def feed(self, text: str) -> list[StreamEvent]:
        self.buffer += text
        events: list[StreamEvent] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        rest, self.buffer = self.buffer, ""
        if self.state == "think":
            self._emit_thinking(rest, events)
        elif self.state == "call":
            self._close_call(rest, events, truncated=True)
        elif self.state == "bare":
            self._close_bare(rest, events)
        else:
            self._emit_text(rest, events)
        return events

    def _step(self, events: list[StreamEvent]) -> bool:
        """Consume what can be decided from the buffer; True if the state changed."""
        if self.state == "text":
            return self._step_text(events)
        if self.state == "think":
            return self._step_until(THINK_CLOSE, events, self._emit_thinking, "text")
        if self.state == "call":
            index = self.buffer.find(CALL_CLOSE)
            if index == -1:
                return False
            body, self.buffer = self.buffer[:index], self.buffer[index + len(CALL_CLOSE) :]
            self._close_call(body, events, truncated=False)
            self.state = "text"
            return True
        return False  # bare JSON: decided at finish()

    def _step_text(self, events: list[StreamEvent]) -> bool:
        if self.at_start and self.tool_names:
            head = self.buffer.lstrip()
            if head.startswith(BARE_STARTS):
                self.state = "bare"
                return False
            if any(start.startswith(head) for start in BARE_STARTS):
                return False  # empty, or may still become a bare call
        if "<" not in self.buffer:  # the common case: plain text, nothing to hold back
            text, self.buffer = self.buffer, ""
            self._emit_text(text, events)
            return False
        index, marker = find_first(self.buffer, TEXT_MARKERS)
        if index != -1:
            self._emit_text(self.buffer[:index], events)
            self.buffer = self.buffer[index + len(marker) :]
            self.state = "call" if marker == CALL_OPEN else "think"
            return True
        keep = partial_suffix(self.buffer, TEXT_MARKERS)
        cut = len(self.buffer) - keep
        self._emit_text(self.buffer[:cut], events)
        self.buffer = self.buffer[cut:]
        return False

    def _step_until(self, marker: str, events: list[StreamEvent], emit, next_state: str) -> bool:
        index = self.buffer.find(marker)
        if index != -1:
            emit(self.buffer[:index], events)
            self.buffer = self.buffer[index + len(marker) :].lstrip("\n")
            self.state = next_state
            return True
        keep = partial_suffix(self.buffer, (marker,))
        cut = len(self.buffer) - keep
        emit(self.buffer[:cut], events)
        self.buffer = self.buffer[cut:]
        return False

    def _emit_text(self, text: str, events: list[StreamEvent]) -> None:
        if self.at_start:
            text = text.lstrip()
        if text:
            self.at_start = False
            events.append(TextDelta(text))

    def _emit_thinking(self, text: str, events: list[StreamEvent]) -> None:
        if text:
            events.append(ThinkingDelta(text))

    def _close_call(self, body: str, events: list[StreamEvent], truncated: bool) -> None:
        calls = parse_calls(body, self.tool_names)
        if calls is None:
            closing = "" if truncated else CALL_CLOSE
            self._emit_text(CALL_OPEN + body + closing, events)
            return
        for name, arguments in calls:
            self._emit_call(name, arguments, events)

    def _close_bare(self, body: str, events: list[StreamEvent]) -> None:
        calls = parse_calls(_strip_fence(body), self.tool_names)
        if calls is None:
            self._emit_text(body, events)
            return
        for name, arguments in calls:
            self._emit_call(name, arguments, events)

    def _emit_call(self, name: str, arguments: dict[str, Any], events: list[StreamEvent]) -> None:
        index = self.tool_calls
        self.tool_calls += 1
        self.at_start = False
        events.append(ToolCallStart(index=index, id=new_call_id(), name=name))
        events.append(ToolCallDelta(index=index, arguments=json.dumps(arguments)))
        events.append(ToolCallEnd(index=index))


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def parse_calls(body: str, tool_names: set[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls in a JSON body (one object, a list, or several objects), or None if malformed."""
    decoder = json.JSONDecoder()
    text = body.strip()
    values: list[Any] = []
    while text:
        try:
            value, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            return None
        values.extend(value if isinstance(value, list) else [value])
        text = text[end:].lstrip().lstrip(",").lstrip()
    calls = [_as_call(v, tool_names) for v in values]
    if not calls or any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


def _as_call(value: Any, tool_names: set[str]) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    name = value["name"]
    if tool_names and name not in tool_names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return name, arguments
