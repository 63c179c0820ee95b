"""Hermes / Qwen 2.5 / Qwen3 family: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
`<think>...</think>`, and a bare JSON call as the whole answer.

This is the shared StreamParser as it is: every family reads this format too, since it is the
one agentport documents in the system prompt of templates without tool support.
"""

from __future__ import annotations

from agentport.chat.call_format import CallFormat, json_call_rule, json_named_opening, repeated
from agentport.chat.grammar import Rules
from agentport.chat.stream_parser import StreamParser
from agentport.core import ToolSpec

MARKERS = ("<tool_call>",)
DETECTION_ORDER = 50
NAME_HINTS = (r"hermes", r"qwen")


class Parser(StreamParser):
    pass


def calls_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    block = rules.add("block", f'{json_call_rule(tools, rules, "arguments")} "\\n</tool_call>"')
    return repeated(block, '"\\n<tool_call>\\n"', parallel)


CALL_FORMAT = CallFormat(
    "hermes",
    "<tool_call>",
    "<tool_call>\n",
    calls_body,
    json_named_opening("arguments"),
    stops=("<tool_call>",),
)
