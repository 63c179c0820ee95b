"""Generic JSON fallback, for templates that take tools in a format no other family knows: a
JSON call (or a list of calls) as the whole answer, fenced or not, a ```json fenced call after
some text, and the Hermes `<tool_call>` tags and `<think>` blocks every family reads.
"""

from __future__ import annotations

from agentport.chat.call_format import CallFormat, json_calls_body, json_named_opening
from agentport.chat.stream_parser import Opener, StreamParser

MARKERS: tuple[str, ...] = ()  # chosen by override, or for templates that take tools unrecognized
DETECTION_ORDER = 60
NAME_HINTS: tuple[str, ...] = ()
FENCE_OPEN, FENCE_CLOSE = "```json", "```"


class Parser(StreamParser):
    def openers(self) -> dict[str, Opener]:
        opens = super().openers()
        opens[FENCE_OPEN] = self.json_calls(FENCE_CLOSE)
        return opens


CALL_FORMAT = CallFormat(
    "generic",
    '{"name"',
    "",
    json_calls_body,
    json_named_opening("arguments"),
    anywhere=False,
)
