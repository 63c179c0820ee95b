"""Llama 3.1+ family: a JSON call `{"name": ..., "parameters": {...}}` (or `"arguments"`, or with
`"type": "function"`) as the answer, bare or after `<|python_tag|>`; several calls separated by
`;` or newlines.
"""

from __future__ import annotations

from agentport.chat.call_format import CallFormat, json_call_rule, json_named_opening
from agentport.chat.grammar import Rules
from agentport.chat.stream_parser import Opener, StreamParser
from agentport.core import ToolSpec

PYTHON_TAG = "<|python_tag|>"
TURN_ENDS = ("<|eom_id|>", "<|eot_id|>")  # dropped if the detokenizer lets them through
MARKERS = (PYTHON_TAG, '"parameters": dictionary of argument name')
DETECTION_ORDER = 40
NAME_HINTS = (r"^(?!.*hermes).*llama[-_ .]?3",)


class Parser(StreamParser):
    SPECIAL_TOKENS = (PYTHON_TAG, *TURN_ENDS)

    def openers(self) -> dict[str, Opener]:
        opens = super().openers()
        opens[PYTHON_TAG] = self.json_calls()
        for marker in TURN_ENDS:
            opens[marker] = None
        return opens


def calls_body(tools: list[ToolSpec], rules: Rules, parallel: bool) -> str:
    return json_call_rule(tools, rules, "parameters")


CALL_FORMAT = CallFormat(
    "llama3",
    '{"name"',
    "",
    calls_body,
    json_named_opening("parameters"),
    stops=(PYTHON_TAG,),
    anywhere=False,
    also=PYTHON_TAG,
)
