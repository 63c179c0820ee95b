"""The collector of non-streaming answers: a call the output ended inside becomes its text."""

from __future__ import annotations

import asyncio

from agentport.core import (
    Done,
    FinishReason,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from agentport.server.streaming import collect

WRITTEN = '<tool_call>{"name": "Bash", "arguments": {"command": "ls'


def events(reason: FinishReason) -> list:
    return [
        TextDelta("I will look."),
        ToolCallStart(0, "a", "Read"),
        ToolCallDelta(0, '{"path": "a"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "b", "Bash"),
        ToolCallDelta(1, '{"command": "ls"}'),
        ToolCallEnd(1, cut=WRITTEN),
        Done(reason),
    ]


def collected(reason: FinishReason) -> list:
    async def batches():
        yield events(reason)

    added: list = []
    asyncio.run(collect(batches(), added.append))
    return added


def test_a_cut_call_is_its_text_when_the_answer_hit_max_tokens():
    added = collected(FinishReason.LENGTH)
    assert added[:4] == events(FinishReason.LENGTH)[:4]  # the complete call stays a call
    assert added[4:] == [TextDelta(WRITTEN)]


def test_a_call_closed_at_the_end_of_generation_stays_a_call():
    assert collected(FinishReason.TOOL_CALLS) == events(FinishReason.TOOL_CALLS)[:-1]
