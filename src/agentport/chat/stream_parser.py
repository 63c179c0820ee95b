"""The streaming parser every family builds on: plain text until a marker, then the Section the
marker opens (thinking, or tool calls), then text again.

Text that may be the start of a marker is held back; a marker never reaches the text, and a
stray closing think tag is dropped. Every family reads `<think>...</think>`, the Hermes
`<tool_call>{json}</tool_call>` format (agentport's documented tool prompt, and what a forced
call starts with) and, when the request has tools, a JSON call that is the whole answer, fenced
or not. A family adds its own markers by overriding `openers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentport.chat.json_calls import JsonCallsSection
from agentport.chat.sections import Out, Section, ToolSet
from agentport.chat.stream_text import find_first, partial_suffix
from agentport.core import StreamEvent, ToolCallEnd, ToolSpec

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
THINK_TAGS = (("<think>", "</think>"),)
BARE_STARTS = ("{", "[{", "```")

Opener = Callable[[], Section] | None  # None: the marker is dropped


class ThinkSection(Section):
    """Reasoning up to a closing tag, as ThinkingDelta; whitespace around it is dropped."""

    def __init__(self, out: Out, closers: tuple[str, ...]) -> None:
        self.out = out
        self.closers = closers
        self.started = False

    def feed(self, text: str) -> int:
        index, closer = find_first(text, self.closers)
        if index != -1:
            self._emit(text[:index].rstrip())
            self.done = True
            self.out.strip = True
            return index + len(closer)
        body = text[: len(text) - partial_suffix(text, self.closers)].rstrip()
        self._emit(body)
        return len(body)

    def finish(self, rest: str) -> bool:
        self._emit(rest.rstrip())
        return True

    def _emit(self, text: str) -> None:
        if not self.started:
            text = text.lstrip()
        if text:
            self.started = True
            self.out.thinking(text)


class StreamParser:
    """Model output -> TextDelta / ThinkingDelta / ToolCallStart, Delta, End events."""

    THINK: tuple[tuple[str, str], ...] = THINK_TAGS
    SPECIAL_TOKENS: tuple[str, ...] = ()  # never text, even around a call that was not one

    def __init__(self, tools: Sequence[ToolSpec], thinking_open: bool = False) -> None:
        self.tools = ToolSet(tools)
        self.out = Out()
        self.buffer = ""
        self.section: Section | None = None
        self.opener = ""
        self.raw: list[str] = []  # what the open section consumed, for a fallback to text
        self.bare_tried = not self.tools  # a bare JSON call is looked for once, at the start
        self.opens = self.openers()
        for token in self.SPECIAL_TOKENS:
            self.opens.setdefault(token, None)
        self.markers = tuple(self.opens)
        self.first_chars = "".join(sorted({marker[0] for marker in self.markers}))
        if thinking_open:
            self._open(self._think(), "")

    @property
    def tool_calls(self) -> int:
        return self.out.tool_calls

    def openers(self) -> dict[str, Opener]:
        opens: dict[str, Opener] = {CALL_OPEN: self.json_calls(CALL_CLOSE)}
        for opener, closer in self.THINK:
            opens[opener] = self._think
            opens[closer] = None
        return opens

    def json_calls(self, *close: str) -> Callable[[], Section]:
        return lambda: JsonCallsSection(self.tools, self.out, close)

    def feed(self, text: str) -> list[StreamEvent]:
        self.buffer += text
        while self._step():
            pass
        return self.out.take()

    def finish(self) -> list[StreamEvent]:
        rest, self.buffer = self.buffer, ""
        if self.section is None:
            self.out.text(rest)
        elif not self.section.finish(rest):
            self._fallback(rest)
        else:
            self._mark_cut(self.opener + "".join(self.raw) + rest)
        self.section = None
        return self.out.take()

    def _mark_cut(self, written: str) -> None:
        """The output ended inside a call: its end says so, with the call's text."""
        for event in reversed(self.out.events):
            if isinstance(event, ToolCallEnd):
                event.cut = written
                return

    def _think(self) -> Section:
        return ThinkSection(self.out, tuple(closer for _, closer in self.THINK))

    def _open(self, section: Section, opener: str) -> None:
        self.section, self.opener, self.raw = section, opener, []

    def _fallback(self, rest: str) -> None:
        text = self.opener + "".join(self.raw) + rest
        for token in self.SPECIAL_TOKENS:
            text = text.replace(token, "")
        self.section = None
        self.out.text(text)

    def _step(self) -> bool:
        """Consume what can be decided now; True if something changed and more may follow."""
        if self.section is None:
            return self._scan_text()
        section = self.section
        used = section.feed(self.buffer)
        if used:
            self.raw.append(self.buffer[:used])
            self.buffer = self.buffer[used:]
        if section.failed:
            self._fallback("")
            return True
        if section.done:
            self.section = None
            return True
        return False

    def _scan_text(self) -> bool:
        if not (self.out.answered or self.bare_tried):
            bare = self._bare_start()
            if bare is not False:
                return bool(bare)
        buffer = self.buffer
        if not any(char in buffer for char in self.first_chars):
            self.buffer = ""
            self.out.text(buffer)
            return False
        index, marker = find_first(buffer, self.markers)
        if index == -1:
            cut = len(buffer) - partial_suffix(buffer, self.markers)
            self.out.text(buffer[:cut])
            self.buffer = buffer[cut:]
            return False
        self.out.text(buffer[:index])
        self.buffer = buffer[index + len(marker) :]
        make = self.opens[marker]
        if make is not None:
            self._open(make(), marker)
        return True

    def _bare_start(self) -> bool | None:
        """A JSON call as the whole answer: True if one may begin here (a section opens), None
        while undecided, False if the answer is something else."""
        head = self.buffer.lstrip()
        if head.startswith(BARE_STARTS):
            self.bare_tried = True
            self.buffer = head
            self._open(JsonCallsSection(self.tools, self.out, fence=True), "")
            return True
        if not head or any(start.startswith(head) for start in BARE_STARTS):
            return None
        return False
