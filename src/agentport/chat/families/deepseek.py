"""DeepSeek V3 / R1 family (and V3.1): calls between special tokens, reasoning in `<think>`.

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
    ```json
    {...}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>                         (V3, R1)

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>...  (V3.1)

The bars are full-width (U+FF5C) and the spaces are U+2581; spellings with `_` or a plain space,
which some quantized tokenizers produce, are read too. R1's template opens `<think>` in the
prompt, so its output starts inside thinking (the runtime says so with `thinking_open`).
"""

from __future__ import annotations

from agentport.chat.call_format import CallFormat, arguments_rule, repeated
from agentport.chat.grammar import Rules, literal
from agentport.chat.sections import (
    WHITESPACE,
    ArgumentStream,
    Out,
    StateSection,
    ToolSet,
    match_at,
)
from agentport.chat.stream_parser import Opener, StreamParser
from agentport.chat.stream_text import find_first, partial_suffix
from agentport.core import ToolSpec


def spellings(marker: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((marker, marker.replace("▁", "_"), marker.replace("▁", " "))))


CALLS_BEGIN = spellings("<｜tool▁calls▁begin｜>")
CALLS_END = spellings("<｜tool▁calls▁end｜>")
CALL_BEGIN = spellings("<｜tool▁call▁begin｜>")
CALL_END = spellings("<｜tool▁call▁end｜>")
SEPARATOR = spellings("<｜tool▁sep｜>")
MARKERS = (CALLS_BEGIN[0], CALL_BEGIN[0])
DETECTION_ORDER = 20
NAME_HINTS = (r"deepseek",)
FENCE = "```"
MAX_HEAD = 256


class CallsSection(StateSection):
    """From the calls-begin token to the calls-end token: one call after another."""

    def __init__(self, tools: ToolSet, out: Out, state: str = "between") -> None:
        self.tools, self.out = tools, out
        self.state = state  # between | head | name | arguments | stream | tail | skip
        self.name = ""
        self.stream: ArgumentStream | None = None
        self.calls = 0

    def finish(self, rest: str) -> bool:
        if self.stream is not None:
            self.stream.close()
        return self.calls > 0

    def _between(self, text: str, index: int) -> int | None:
        if text[index] in WHITESPACE:
            return index + 1
        marker = match_at(text, index, CALL_BEGIN + CALLS_END)
        if marker == "":
            return None
        if marker is None:
            return self._stray(index)
        self.state = "head" if marker in CALL_BEGIN else self.state
        self.done = marker in CALLS_END
        return index + len(marker)

    def _head(self, text: str, index: int) -> int | None:
        """`function` (V3: the name follows the separator) or the name itself (V3.1)."""
        found, separator = find_first(text[index:], SEPARATOR)
        if found == -1:
            return None if len(text) - index <= MAX_HEAD else self._stray(index)
        head = text[index : index + found].strip()
        if not head or "\n" in head:
            return self._stray(index)
        self.name = head
        self.state = "name" if head == "function" else "arguments"
        return index + found + len(separator)

    def _name(self, text: str, index: int) -> int | None:
        rest = text[index:]
        if rest.lstrip(" ").startswith("{"):  # V3.1 with a tool named "function"
            self.state = "arguments"
            return index
        found, _ = find_first(rest, ("\n", FENCE, "{"))
        if found == -1:
            return None if len(rest) <= MAX_HEAD else self._stray(index)
        self.name = rest[:found].strip()
        self.state = "arguments"
        return index + found

    def _arguments(self, text: str, index: int) -> int | None:
        char = text[index]
        if char in WHITESPACE:
            return index + 1
        fence = match_at(text, index, (FENCE,))
        if fence == "":
            return None
        if fence:
            newline = text.find("\n", index)
            return None if newline == -1 else newline + 1
        if char != "{" or not self.tools.accepts(self.name):
            return self._stray(index)
        self.stream = ArgumentStream(self.out, self.name)
        self.calls += 1
        self.state = "stream"
        return index

    def _stream(self, text: str, index: int) -> int:
        used = self.stream.feed(text[index:])
        if self.stream.done:
            self.state = "skip" if self.stream.broken else "tail"
            self.stream = None
        return index + used

    def _tail(self, text: str, index: int) -> int | None:
        if text[index] in WHITESPACE or text[index] == "`":
            return index + 1
        marker = match_at(text, index, CALL_END + CALLS_END + CALL_BEGIN)
        if marker == "":
            return None
        if marker is None:
            return self._stray(index)
        self.state = "head" if marker in CALL_BEGIN else "between"
        self.done = marker in CALLS_END
        return index + len(marker)

    def _stray(self, index: int) -> int:
        if not self.calls:
            self.failed = True
        else:
            self.state = "skip"
        return index

    def _skip(self, text: str, index: int) -> int | None:
        rest = text[index:]
        found, marker = find_first(rest, CALLS_END)
        if found != -1:
            self.done = True
            return index + found + len(marker)
        end = len(rest) - partial_suffix(rest, CALLS_END)
        return index + end if end > 0 else None


class Parser(StreamParser):
    SPECIAL_TOKENS = CALLS_BEGIN + CALLS_END + CALL_BEGIN + CALL_END + SEPARATOR

    def openers(self) -> dict[str, Opener]:
        opens = super().openers()
        for marker in CALLS_BEGIN:
            opens[marker] = lambda: CallsSection(self.tools, self.out)
        for marker in CALL_BEGIN:
            opens[marker] = lambda: CallsSection(self.tools, self.out, "head")
        for marker in CALLS_END:
            opens[marker] = None
        return opens


def calls_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    calls = [
        rules.add(
            f"{tool.name}-call",
            literal(f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{tool.name}\n```json\n")
            + f' {arguments_rule(tool, rules)} "\\n```<｜tool▁call▁end｜>"',
        )
        for tool in tools
    ]
    call = rules.add("call", " | ".join(calls))
    calls_list = repeated(call, '"\\n"', parallel)
    return f'{calls_list} "<｜tool▁calls▁end｜>"'


CALL_FORMAT = CallFormat(
    "deepseek",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁begin｜>",
    calls_body,
    lambda name: f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n",
    stops=("<｜tool▁calls▁begin｜>",),
)
