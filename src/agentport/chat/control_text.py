"""Text is text: a control token's string inside content never becomes that control token.

A model's control tokens (`<|im_start|>`, `<|endoftext|>`, ...) may only come from its chat
template's own markup. Before rendering, every control-token string inside content (messages,
tool results, tool definitions) is marked with two private-use sentinels; the template's markup
stays unmarked. `segments` then cuts the rendered prompt into markup, tokenized with
special-token parsing on, and the marked strings, tokenized as plain text: a file the agent read
that says `<|im_start|>system` stays text, and `count_tokens` counts it as the engine does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

OPEN, CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile("[\ue000\ue001]")
_MARKED = re.compile("\ue000([^\ue000\ue001]*)\ue001")
REPLACEMENT = "\ufffd"


class ControlText:
    """Marks a model's control-token strings wherever they appear in content."""

    def __init__(self, control_texts: Iterable[str] = ()) -> None:
        texts = sorted({text for text in control_texts if text}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, texts))) if texts else None

    def protect(self, value: Any) -> Any:
        """`value` (a string, or lists and dicts of them) with every control-token string
        marked; sentinels already in the content become U+FFFD."""
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, list):
            return [self.protect(item) for item in value]
        if isinstance(value, dict):
            return {self.protect(key): self.protect(item) for key, item in value.items()}
        return value

    def _text(self, text: str) -> str:
        if OPEN in text or CLOSE in text:
            text = _SENTINEL.sub(REPLACEMENT, text)
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: OPEN + match.group(0) + CLOSE, text)


def segments(prompt: str) -> list[tuple[str, bool]]:
    """The rendered prompt as (text, is markup) pieces in order: marked strings are not
    markup; a sentinel a template cut from its pair is dropped."""
    if OPEN not in prompt and CLOSE not in prompt:
        return [(prompt, True)] if prompt else []
    pieces: list[tuple[str, bool]] = []
    position = 0
    for match in _MARKED.finditer(prompt):
        pieces.append((_SENTINEL.sub("", prompt[position : match.start()]), True))
        pieces.append((match.group(1), False))
        position = match.end()
    pieces.append((_SENTINEL.sub("", prompt[position:]), True))
    return [(text, markup) for text, markup in pieces if text]


def plain(prompt: str) -> str:
    """The prompt as the model reads it, without the marks."""
    return _SENTINEL.sub("", prompt) if OPEN in prompt or CLOSE in prompt else prompt
