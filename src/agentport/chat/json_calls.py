"""JSON tool calls as most families write them: `{"name": ..., "arguments": {...}}` objects, one,
several or a list, inside a family's markers or bare. The arguments stream as they are written
once the name is known; a call that is not one (unknown name or key, malformed) before its
ToolCallStart is plain text.
"""

from __future__ import annotations

import json

from agentport.chat.json_scanner import JsonScanner
from agentport.chat.sections import (
    WHITESPACE,
    ArgumentStream,
    Out,
    Section,
    ToolSet,
    as_arguments,
    match_at,
)
from agentport.chat.stream_text import find_first, partial_suffix

NAME_KEYS = ("name",)
ARGUMENT_KEYS = ("arguments", "parameters")
IGNORED_KEYS = ("type", "id")
NESTED_KEY = "function"  # OpenAI's shape: {"type": "function", "function": {"name": ...}}
KNOWN_KEYS = (*NAME_KEYS, *ARGUMENT_KEYS, *IGNORED_KEYS, NESTED_KEY)
SEPARATORS = ",;"
FENCE = "```"
FENCE_LANGUAGES = ("", "json")


class Capture:
    """A JSON value kept whole; `text` is its compact form once `done`."""

    def __init__(self) -> None:
        self.scanner = JsonScanner()
        self.parts: list[str] = []
        self.failed = False
        self.done = False

    def feed(self, text: str) -> int:
        used, piece = self.scanner.feed(text)
        self.parts.append(piece)
        self.done, self.failed = self.scanner.done, self.scanner.failed
        return used

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def value(self) -> object:
        return json.loads(self.text)


class CallReader:
    """One JSON call object. The call starts when its arguments object opens with the name
    already known; arguments given before the name, or as a string, are emitted whole."""

    def __init__(self, tools: ToolSet, out: Out) -> None:
        self.tools, self.out = tools, out
        self.state = "open"  # open | key | colon | value | next
        self.key = ""
        self.name: str | None = None
        self.arguments: str | None = None
        self.value: Capture | ArgumentStream | CallReader | None = None
        self.started = False
        self.done = False
        self.failed = False
        self.broken = False  # it started, then went wrong: the rest of it is not a call

    def feed(self, text: str) -> int:
        index = 0
        while index < len(text) and not (self.done or self.failed):
            if self.value is not None:
                index += self._feed_value(text[index:])
            else:
                index = self._structural(text, index)
        return index

    def finish(self) -> bool:
        """The stream ended inside the object: True if it made (or finished) a call."""
        value = self.value
        if isinstance(value, ArgumentStream):
            value.close()
            return True
        if isinstance(value, CallReader) and value.finish():
            return True
        if not self.started and self.name is not None and self.arguments is not None:
            self._emit_whole()
        return self.started

    def _fail(self, index: int) -> int:
        if self.started:
            self.broken = self.done = True
        else:
            self.failed = True
        return index

    def _structural(self, text: str, index: int) -> int:
        char, state = text[index], self.state
        if char in WHITESPACE:
            return index + 1
        if state == "open":
            if char != "{":
                return self._fail(index)
            self.state = "key"
            return index + 1
        if state in ("key", "next") and char == "}":
            return self._close(index + 1)
        if state == "key":
            if char != '"':
                return self._fail(index)
            self.value = Capture()
            return index
        if state == "next":
            if char != ",":
                return self._fail(index)
            self.state = "key"
            return index + 1
        if state == "colon":
            if char != ":":
                return self._fail(index)
            self.state = "value"
            return index + 1
        self.value = self._value_reader(char)
        return index

    def _value_reader(self, first: str) -> Capture | ArgumentStream | CallReader:
        key = self.key
        if key in ARGUMENT_KEYS and first == "{" and self.name is not None and not self.started:
            self.started = True
            return ArgumentStream(self.out, self.name)
        if key == NESTED_KEY and first == "{" and not self.started:
            return CallReader(self.tools, self.out)
        return Capture()

    def _feed_value(self, text: str) -> int:
        value = self.value
        used = value.feed(text)
        if value.failed:
            self.value = None
            self._fail(0)
        elif value.done:
            self.value = None
            self._value_done(value)
        return used

    def _value_done(self, value: Capture | ArgumentStream | CallReader) -> None:
        if self.state == "key":
            self._key_done(value.value())
            return
        self.state = "next"
        if isinstance(value, ArgumentStream):
            self.broken = self.done = value.broken
        elif isinstance(value, CallReader):
            self.started = value.started
            self.broken = self.done = value.broken
        elif self.started:
            return
        elif self.key in NAME_KEYS:
            self._name_done(value.value())
        elif self.key in ARGUMENT_KEYS:
            self.arguments = as_arguments(value.text)
            if self.arguments is None:
                self._fail(0)
            else:
                self._emit_whole()

    def _key_done(self, key: object) -> None:
        if key not in KNOWN_KEYS and not self.started:
            self._fail(0)
            return
        self.key = str(key)
        self.state = "colon"

    def _name_done(self, name: object) -> None:
        if not isinstance(name, str) or not self.tools.accepts(name):
            self._fail(0)
            return
        self.name = name
        self._emit_whole()

    def _emit_whole(self) -> None:
        if self.name is not None and self.arguments is not None and not self.started:
            self.started = True
            self.out.call(self.name, self.arguments)

    def _close(self, index: int) -> int:
        if not self.started:
            if self.name is None:
                return self._fail(index)
            if self.arguments is None and self.tools.requires_arguments(self.name):
                return self._fail(index)  # not a call to this tool after all
            self.arguments = self.arguments or "{}"
            self._emit_whole()
        self.done = True
        return index


class JsonCallsSection(Section):
    """JSON call objects: one, several (separated by commas, semicolons or whitespace) or a
    list. A tagged section ends at one of `close`; an untagged one where anything else begins.
    `fence`: a ``` fence may open the section (a bare answer), and then closes it."""

    def __init__(
        self, tools: ToolSet, out: Out, close: tuple[str, ...] = (), fence: bool = False
    ) -> None:
        self.tools, self.out = tools, out
        self.close = close
        self.fence = fence  # a fence may still open
        self.fenced = False  # a fence is open
        self.reader: CallReader | None = None
        self.calls = 0
        self.in_list = False
        self.skipping = False  # after a broken call: everything up to the end is dropped

    def feed(self, text: str) -> int:
        index = 0
        while index < len(text) and not (self.done or self.failed):
            step = self._step(text, index)
            if step is None:
                break
            index = step
        return index

    def finish(self, rest: str) -> bool:
        if self.reader is not None and self.reader.finish():
            self.calls += 1
        return self.calls > 0

    @property
    def ends(self) -> tuple[str, ...]:
        return self.close + ((FENCE,) if self.fenced else ())

    def _step(self, text: str, index: int) -> int | None:
        if self.reader is not None:
            return index + self._feed_reader(text[index:])
        if self.skipping:
            return self._skip(text, index)
        if self.fence:
            return self._open_fence(text, index)
        char = text[index]
        if char in WHITESPACE or char in SEPARATORS:
            return index + 1
        if self.ends:
            found = match_at(text, index, self.ends)
            if found == "":
                return None
            if found is not None:
                self.done = True
                return index + len(found)
        if char == "{":
            self.reader = CallReader(self.tools, self.out)
            return index
        if char == "[" and not self.in_list and not self.calls:
            self.in_list = True
            return index + 1
        if char == "]" and self.in_list:
            self.in_list = False
            self.done = not self.ends
            return index + 1
        return self._stray(index)

    def _feed_reader(self, text: str) -> int:
        reader = self.reader
        used = reader.feed(text)
        if reader.failed:
            self.reader = None
            self.failed = self.calls == 0
            self.skipping = not self.failed
        elif reader.done:
            self.reader = None
            self.calls += 1
            self.skipping = reader.broken
        return used

    def _stray(self, index: int) -> int:
        """Something that is not a call: plain text if it comes first, else the section ends
        (untagged) or the rest up to its end is dropped."""
        if not self.calls:
            self.failed = True
        elif self.ends:
            self.skipping = True
        else:
            self.done = True
        return index

    def _skip(self, text: str, index: int) -> int | None:
        if not self.ends:
            return len(text)
        rest = text[index:]
        found, marker = find_first(rest, self.ends)
        if found != -1:
            self.done = True
            return index + found + len(marker)
        end = len(text) - partial_suffix(rest, self.ends)
        return end if end > index else None

    def _open_fence(self, text: str, index: int) -> int | None:
        rest = text[index:]
        if not rest.startswith(FENCE):
            if FENCE.startswith(rest):
                return None
            self.fence = False
            return index
        newline = rest.find("\n")
        if newline == -1:
            return None
        if rest[len(FENCE) : newline].strip().lower() not in FENCE_LANGUAGES:
            self.failed = True
            return index
        self.fence, self.fenced = False, True
        return index + newline + 1
