"""Output parsers, one module per model family, each exporting the same names:

    MARKERS: tuple[str, ...]       text in a chat template that identifies the family
    NAME_HINTS: tuple[str, ...]    regular expressions for the GGUF name / architecture
    Parser(tools, thinking_open)   a streaming parser: feed(text) -> events, finish() -> events,
                                   and `tool_calls`, the number of calls it has started

`family_for` picks the family: the Modelfile's override, else the first family (in FAMILIES
order, most specific first) whose markers the template contains, else the first whose name hints
match the GGUF metadata, else `hermes` for a template that does not take tools (agentport then
documents the Hermes format in the system prompt) and `generic` for one that takes them in a
format no family knows. Every family also reads the Hermes format, `<think>` blocks and a bare
JSON call, so a wrong guess degrades gracefully.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from types import ModuleType
from typing import Protocol

from agentport.core import StreamEvent, ToolSpec
from agentport.errors import InvalidRequestError

FAMILIES = ("qwen3_coder", "deepseek", "mistral", "llama3", "hermes", "generic")
FALLBACK = "hermes"  # templates without tool support: agentport's tool prompt is Hermes'
UNKNOWN_TOOLS_FORMAT = "generic"
METADATA_KEYS = ("general.name", "general.basename", "general.architecture")
THINK_OPENERS = ("<think>", "[THINK]")


class OutputParser(Protocol):
    tool_calls: int

    def feed(self, text: str) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


def family_for(
    template_source: str,
    metadata: dict[str, str] | None = None,
    override: str | None = None,
) -> str:
    if override:
        return known_family(override)
    for family in FAMILIES:
        if any(marker in template_source for marker in _module(family).MARKERS):
            return family
    hinted = _from_metadata(metadata or {})
    if hinted:
        return hinted
    return UNKNOWN_TOOLS_FORMAT if "tools" in template_source else FALLBACK


def known_family(name: str) -> str:
    """A family name as written in a Modelfile (`qwen3-coder` is `qwen3_coder`), checked."""
    family = name.strip().lower().replace("-", "_")
    if family not in FAMILIES:
        known = ", ".join(FAMILIES)
        raise InvalidRequestError(f"unknown parser '{name}'; known: {known}", "parser")
    return family


def parser_for(family: str, tools: Sequence[ToolSpec], thinking_open: bool = False) -> OutputParser:
    return _module(known_family(family)).Parser(tools, thinking_open)


def starts_in_thinking(prompt_text: str) -> bool:
    """Whether the rendered prompt ends inside an open think tag (DeepSeek-R1, Qwen3 thinking
    models): the output then starts with reasoning and only closes the tag."""
    return prompt_text.rstrip().endswith(THINK_OPENERS)


def _from_metadata(metadata: dict[str, str]) -> str | None:
    names = " ".join(str(metadata.get(key, "")) for key in METADATA_KEYS).lower()
    if not names.strip():
        return None
    for family in FAMILIES:
        if any(re.search(hint, names) for hint in _module(family).NAME_HINTS):
            return family
    return None


def _module(family: str) -> ModuleType:
    return importlib.import_module(f"agentport.chat.parsers.{family}")
