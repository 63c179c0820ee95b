"""Llama 3.1+ family: a JSON call `{"name": ..., "parameters": {...}}` (or `"arguments"`, or with
`"type": "function"`) as the answer, bare or after `<|python_tag|>`; several calls separated by
`;` or newlines.
"""

from __future__ import annotations

from agentport.chat.parsers._base import Opener, StreamParser

PYTHON_TAG = "<|python_tag|>"
TURN_ENDS = ("<|eom_id|>", "<|eot_id|>")  # dropped if the detokenizer lets them through
MARKERS = (PYTHON_TAG, '"parameters": dictionary of argument name')
NAME_HINTS = (r"^(?!.*hermes).*llama[-_ .]?3",)


class Parser(StreamParser):
    SPECIAL_TOKENS = (PYTHON_TAG, *TURN_ENDS)

    def openers(self) -> dict[str, Opener]:
        opens = super().openers()
        opens[PYTHON_TAG] = self.json_calls()
        for marker in TURN_ENDS:
            opens[marker] = None
        return opens
