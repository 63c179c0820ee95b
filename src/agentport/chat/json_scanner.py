"""Incremental scanning of one JSON value as it streams: where it ends, which prefix of it is
safe to emit, and the suffix that closes that prefix into valid JSON if the stream stops early.

The scanner re-emits the value compactly: whitespace outside strings is dropped, raw control
characters inside strings are escaped, an unknown escape becomes a literal backslash, a trailing
comma is dropped, and Python's True / False / None become JSON literals. The safe prefix ends
inside a string value, right after a container opens, or right after a value; a member's key and
colon, an escape sequence, a number or literal in progress and a comma are held back until what
follows them has begun, so `closing()` only ever needs a quote and closing brackets.
"""

from __future__ import annotations

import re

VALUE, KEY_OR_END, KEY, COLON, COMMA_OR_END, VALUE_OR_END = range(6)
WANTS_VALUE = (VALUE, VALUE_OR_END)
WHITESPACE = " \t\r\n"
STRING_STOP = re.compile(r'["\\\x00-\x1f]')
SCALAR_START = re.compile(r"[-0-9A-Za-z]")
SCALAR_RUN = re.compile(r"[-+.0-9A-Za-z]*")
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
LITERALS = {
    "true": "true",
    "false": "false",
    "null": "null",
    "True": "true",
    "False": "false",
    "None": "null",
}
SIMPLE_ESCAPES = '"\\/bfnrt'
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def escape_control(char: str) -> str:
    return CONTROL.get(char) or f"\\u{ord(char):04x}"


class JsonScanner:
    """Scans one JSON value fed in pieces; `done` once it is complete, `failed` if malformed."""

    def __init__(self) -> None:
        self.stack: list[str] = []  # open containers, "{" or "["
        self.expect = VALUE
        self.string: str | None = None  # "key" or "value" while inside a string
        self.escape = ""  # an escape sequence in progress
        self.scalar = ""  # a number or literal in progress
        self.pending = ""  # scanned text held back until it is safe
        self.in_string_at_safe = False
        self.done = False
        self.failed = False

    def feed(self, text: str) -> tuple[int, str]:
        """Scan `text`: (characters used, the text that became safe to emit)."""
        out: list[str] = []
        index, size = 0, len(text)
        while index < size and not (self.done or self.failed):
            if self.string is not None:
                index = self._in_string(text, index, out)
            elif self.scalar:
                index = self._in_scalar(text, index, out)
            else:
                index = self._structural(text, index, out)
        return index, "".join(out)

    def closing(self) -> str:
        """What completes the text emitted so far into one valid JSON value."""
        quote = '"' if self.in_string_at_safe else ""
        return quote + "".join("}" if c == "{" else "]" for c in reversed(self.stack))

    def _put(self, piece: str, out: list[str], safe: bool) -> None:
        if not safe:
            self.pending += piece
            return
        if self.pending:
            out.append(self.pending)
            self.pending = ""
        out.append(piece)
        self.in_string_at_safe = self.string == "value"

    def _value_done(self) -> None:
        if self.stack:
            self.expect = COMMA_OR_END
        else:
            self.done = True

    def _fail(self, index: int) -> int:
        self.failed = True
        return index

    def _structural(self, text: str, index: int, out: list[str]) -> int:
        char, expect = text[index], self.expect
        if char in WHITESPACE:
            return index + 1
        if char == '"':
            return self._open_string(index, out)
        if char in "{[":
            if expect not in WANTS_VALUE:
                return self._fail(index)
            self.stack.append(char)
            self.expect = KEY_OR_END if char == "{" else VALUE_OR_END
            self._put(char, out, True)
            return index + 1
        if char in "}]":
            return self._close(char, index, out)
        if char == "," and expect == COMMA_OR_END:
            self.expect = KEY if self.stack[-1] == "{" else VALUE
            self._put(",", out, False)
            return index + 1
        if char == ":" and expect == COLON:
            self.expect = VALUE
            self._put(":", out, False)
            return index + 1
        if expect in WANTS_VALUE and SCALAR_START.match(char):
            self.scalar = char
            return index + 1
        return self._fail(index)

    def _open_string(self, index: int, out: list[str]) -> int:
        if self.expect in (KEY_OR_END, KEY):
            self.string = "key"
            self._put('"', out, False)
        elif self.expect in WANTS_VALUE:
            self.string = "value"
            self._put('"', out, True)
        else:
            return self._fail(index)
        return index + 1

    def _close(self, char: str, index: int, out: list[str]) -> int:
        opener = "{" if char == "}" else "["
        if not self.stack or self.stack[-1] != opener:
            return self._fail(index)
        trailing_comma = KEY if opener == "{" else VALUE
        if self.expect == trailing_comma:
            self.pending = ""
        elif self.expect not in (KEY_OR_END if opener == "{" else VALUE_OR_END, COMMA_OR_END):
            return self._fail(index)
        self.stack.pop()
        self._put(char, out, True)
        self._value_done()
        return index + 1

    def _in_scalar(self, text: str, index: int, out: list[str]) -> int:
        end = SCALAR_RUN.match(text, index).end()
        self.scalar += text[index:end]
        if end == len(text):
            return end  # the number or literal may go on in the next piece
        token = LITERALS.get(self.scalar)
        if token is None and NUMBER.fullmatch(self.scalar):
            token = self.scalar
        if token is None:
            return self._fail(end)
        self.scalar = ""
        self._put(token, out, True)
        self._value_done()
        return end

    def _in_string(self, text: str, index: int, out: list[str]) -> int:
        safe = self.string == "value"
        if self.escape:
            return self._in_escape(text, index, out)
        found = STRING_STOP.search(text, index)
        end = found.start() if found else len(text)
        if end > index:
            self._put(text[index:end], out, safe)
        if found is None:
            return end
        char = text[end]
        if char == '"':
            self.string = None
            self._put('"', out, safe)
            if safe:
                self._value_done()
            else:
                self.expect = COLON
        elif char == "\\":
            self.escape = "\\"
        else:
            self._put(escape_control(char), out, safe)
        return end + 1

    def _in_escape(self, text: str, index: int, out: list[str]) -> int:
        char = text[index]
        if len(self.escape) == 1:
            if char == "u":
                self.escape += char
                return index + 1
            if char in SIMPLE_ESCAPES:
                piece = "\\" + char
            elif char < " ":
                piece = "\\\\" + escape_control(char)
            else:
                piece = "\\\\" + char
        elif char not in HEX_DIGITS:
            return self._fail(index)
        else:
            self.escape += char
            if len(self.escape) < 6:
                return index + 1
            piece = self.escape
        self.escape = ""
        self._put(piece, out, self.string == "value")
        return index + 1
