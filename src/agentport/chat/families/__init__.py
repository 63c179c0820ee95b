"""Model families, one module per family in this package, each exporting the same names:

    MARKERS: tuple[str, ...]       text in a chat template that identifies the family
    NAME_HINTS: tuple[str, ...]    regular expressions for the GGUF name / architecture
    DETECTION_ORDER: int           where the family is tried when detecting (most specific first)
    Parser(tools, thinking_open)   a streaming parser: feed(text) -> events, finish() -> events,
                                   and `tool_calls`, the number of calls it has started
    CALL_FORMAT: CallFormat        how the family writes calls, and their grammar

The families are the modules found here (FAMILIES, in detection order). `family_for` picks one:
the Modelfile's override, else the first family whose markers the template contains, else the
first whose name hints match the GGUF metadata, else PROMPT_FAMILY for a template that does not
take tools (agentport then documents that family's format in the system prompt) and `generic`
for one that takes them in a format no family knows. Every family also reads the Hermes format,
`<think>` blocks and a bare JSON call, so a wrong guess degrades gracefully. A family name that
is none of these is an InvalidRequestError, never a silent fallback.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from agentport.core import StreamEvent, ToolSpec
from agentport.errors import InvalidRequestError

if TYPE_CHECKING:
    from agentport.chat.call_format import CallFormat

PROMPT_FAMILY = "hermes"  # the format of `tools_prompt.py`, for templates without tool support
UNKNOWN_TOOLS_FORMAT = "generic"
METADATA_KEYS = ("general.name", "general.basename", "general.architecture")
THINK_OPENERS = ("<think>", "[THINK]")


class OutputParser(Protocol):
    tool_calls: int

    def feed(self, text: str) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


def _discover() -> dict[str, ModuleType]:
    found = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    found.sort(key=lambda module: module.DETECTION_ORDER)
    return {module.__name__.rsplit(".", 1)[-1]: module for module in found}


_MODULES = _discover()
FAMILIES = tuple(_MODULES)


def family_for(
    template_source: str,
    metadata: dict[str, str] | None = None,
    override: str | None = None,
) -> str:
    if override:
        return known_family(override)
    for family, module in _MODULES.items():
        if any(marker in template_source for marker in module.MARKERS):
            return family
    hinted = _from_metadata(metadata or {})
    if hinted:
        return hinted
    return UNKNOWN_TOOLS_FORMAT if "tools" in template_source else PROMPT_FAMILY


def known_family(name: str) -> str:
    """A family name as written in a Modelfile (`qwen3-coder` is `qwen3_coder`), checked."""
    family = name.strip().lower().replace("-", "_")
    if family not in _MODULES:
        known = ", ".join(FAMILIES)
        raise InvalidRequestError(f"unknown parser '{name}'; known: {known}", "parser")
    return family


def parser_for(family: str, tools: Sequence[ToolSpec], thinking_open: bool = False) -> OutputParser:
    return _MODULES[known_family(family)].Parser(tools, thinking_open)


def call_format(family: str) -> CallFormat:
    """The call format of `family`; InvalidRequestError for an unknown family."""
    return _MODULES[known_family(family)].CALL_FORMAT


def starts_in_thinking(prompt_text: str) -> bool:
    """Whether the rendered prompt ends inside an open think tag (DeepSeek-R1, Qwen3 thinking
    models): the output then starts with reasoning and only closes the tag."""
    return prompt_text.rstrip().endswith(THINK_OPENERS)


def _from_metadata(metadata: dict[str, str]) -> str | None:
    names = " ".join(str(metadata.get(key, "")) for key in METADATA_KEYS).lower()
    if not names.strip():
        return None
    for family, module in _MODULES.items():
        if any(re.search(hint, names) for hint in module.NAME_HINTS):
            return family
    return None
