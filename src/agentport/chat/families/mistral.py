"""Mistral family: `[TOOL_CALLS]` followed by a JSON list `[{"name": ..., "arguments": {...}}]`
(v3 to v7 tokenizers), or by `NAME[ARGS]{...}` (v11 and later; `NAME[CALL_ID]id[ARGS]{...}` and
`NAME{...}` are read too), one `[TOOL_CALLS]` per call. Reasoning comes in `[THINK]...[/THINK]`
(Magistral) or `<think>...</think>`.
"""

from __future__ import annotations

import json
import re

from agentport.chat.call_format import CallFormat, json_call_rule, repeated
from agentport.chat.grammar import SPACE, Rules
from agentport.chat.json_calls import JsonCallsSection
from agentport.chat.sections import (
    WHITESPACE,
    ArgumentStream,
    Out,
    StateSection,
    ToolSet,
)
from agentport.chat.stream_parser import THINK_TAGS, Opener, StreamParser
from agentport.chat.stream_text import find_first, partial_suffix
from agentport.core import ToolSpec

TOOL_CALLS, ARGS, CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"
MARKERS = (TOOL_CALLS,)
DETECTION_ORDER = 30
NAME_HINTS = (r"mistral|mixtral|ministral|devstral|magistral|codestral|pixtral",)
NAME = re.compile(r"[\w.\-]+")
MAX_NAME = 256


class CallsSection(StateSection):
    """What follows one `[TOOL_CALLS]`: a JSON list of calls, or one named call."""

    def __init__(self, tools: ToolSet, out: Out) -> None:
        self.tools, self.out = tools, out
        self.state = "start"  # start | json | name | call_id | arguments | stream
        self.inner: JsonCallsSection | None = None
        self.stream: ArgumentStream | None = None
        self.name = ""

    def finish(self, rest: str) -> bool:
        if self.inner is not None:
            return self.inner.finish(rest)
        if self.stream is not None:
            self.stream.close()
            return True
        return False

    def _start(self, text: str, index: int) -> int:
        char = text[index]
        if char in WHITESPACE:
            return index + 1
        if char in "[{":
            self.inner = JsonCallsSection(self.tools, self.out)
            self.state = "json"
        else:
            self.state = "name"
        return index

    def _json(self, text: str, index: int) -> int | None:
        used = self.inner.feed(text[index:])
        self.done, self.failed = self.inner.done, self.inner.failed
        return index + used if used or self.done or self.failed else None

    def _name(self, text: str, index: int) -> int | None:
        rest = text[index:]
        found, marker = find_first(rest, (ARGS, CALL_ID, "{"))
        if found == -1:
            head = rest[: len(rest) - partial_suffix(rest, (ARGS, CALL_ID))].strip()
            waiting = len(rest) <= MAX_NAME and (not head or NAME.fullmatch(head))
            return None if waiting else self._fail(index)
        name = rest[:found].strip()
        if not NAME.fullmatch(name) or not self.tools.accepts(name):
            return self._fail(index)
        self.name = name
        self.state = "call_id" if marker == CALL_ID else "arguments"
        return index + found + (0 if marker == "{" else len(marker))

    def _call_id(self, text: str, index: int) -> int | None:
        rest = text[index:]
        found = rest.find(ARGS)
        if found == -1:
            return None if len(rest) <= MAX_NAME else self._fail(index)
        self.state = "arguments"
        return index + found + len(ARGS)

    def _arguments(self, text: str, index: int) -> int:
        char = text[index]
        if char in WHITESPACE:
            return index + 1
        if char != "{":
            return self._fail(index)
        self.stream = ArgumentStream(self.out, self.name)
        self.state = "stream"
        return index

    def _stream(self, text: str, index: int) -> int:
        used = self.stream.feed(text[index:])
        if self.stream.done:
            self.stream = None
            self.done = True
        return index + used

    def _fail(self, index: int) -> int:
        self.failed = True
        return index


class Parser(StreamParser):
    THINK = (("[THINK]", "[/THINK]"), *THINK_TAGS)
    SPECIAL_TOKENS = (TOOL_CALLS, ARGS, CALL_ID)

    def openers(self) -> dict[str, Opener]:
        opens = super().openers()
        opens[TOOL_CALLS] = lambda: CallsSection(self.tools, self.out)
        return opens


def calls_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    call_id = f'"," {SPACE} "\\"id\\":" {SPACE} "\\"" [a-zA-Z0-9]{{9}} "\\""'
    call = json_call_rule(tools, rules, "arguments", extra=f" ({call_id})?")
    separator = f'"," {SPACE}'
    return f'" "? "[" {repeated(call, separator, parallel)} "]"'


CALL_FORMAT = CallFormat(
    "mistral",
    TOOL_CALLS,
    TOOL_CALLS,
    calls_body,
    lambda name: ' [{"name": ' + json.dumps(name) + ', "arguments": ',
    stops=(TOOL_CALLS,),
)
