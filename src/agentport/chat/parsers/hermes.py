"""Hermes / Qwen 2.5 / Qwen3 family: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
`<think>...</think>`, and a bare JSON call as the whole answer.

This is the shared StreamParser as it is: every family reads this format too, since it is the
one agentport documents in the system prompt of templates without tool support.
"""

from __future__ import annotations

from agentport.chat.parsers._base import StreamParser

MARKERS = ("<tool_call>",)
NAME_HINTS = (r"hermes", r"qwen")


class Parser(StreamParser):
    pass
