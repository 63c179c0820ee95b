"""Output parsers, one module per model family, each exporting the same names:

    MARKERS: tuple[str, ...]       text in a chat template that identifies the family
    Parser(tool_names)             a streaming parser with feed(text) -> events, finish() -> events

`parser_for(template_source)` picks the first family whose markers the template contains, and
falls back to `hermes`, which also reads the documented tool format of `chat/tools_prompt.py`.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from agentport.core import StreamEvent

FAMILIES = ("hermes",)
FALLBACK = "hermes"


class OutputParser(Protocol):
    tool_calls: int

    def feed(self, text: str) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


def family_for(template_source: str) -> str:
    for family in FAMILIES:
        module = importlib.import_module(f"agentport.chat.parsers.{family}")
        if any(marker in template_source for marker in module.MARKERS):
            return family
    return FALLBACK


def parser_for(family: str, tool_names: list[str]) -> OutputParser:
    module = importlib.import_module(f"agentport.chat.parsers.{family}")
    return module.Parser(tool_names)
