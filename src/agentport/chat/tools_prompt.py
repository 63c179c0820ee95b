"""The documented tool format for chat templates that have no tool support of their own.

When a model's template does not accept `tools`, agentport appends this block to the system
prompt (after the client's own system text, so the prefix stays stable from turn to turn):

    # Tools

    You may call one or more functions to assist with the user query.

    You are provided with function signatures within <tools></tools> XML tags:
    <tools>
    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}
    ...one line per tool...
    </tools>

    For each function call, return a json object with function name and arguments within
    <tool_call></tool_call> XML tags:
    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>

Earlier calls in the conversation are rendered the same way inside the assistant's turn, and
their results as `<tool_response>...</tool_response>` in a user turn. This is the Hermes /
Qwen 2.5 convention, which most small open models have seen in training; the Hermes parser
(`chat/families/hermes.py`) reads it back.
"""

from __future__ import annotations

import json
from typing import Any

from agentport.core import ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def openai_function(tool: ToolSpec) -> dict[str, Any]:
    """A tool as the `{"type": "function", ...}` dict that chat templates expect."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        },
    }


def tools_block(tools: list[ToolSpec]) -> str:
    lines = "\n".join(json.dumps(openai_function(t), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        f'{TOOL_CALL_OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n'
        f"{TOOL_CALL_CLOSE}"
    )


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{payload}\n{TOOL_CALL_CLOSE}"


def tool_response_text(content: str) -> str:
    return f"<tool_response>\n{content}\n</tool_response>"
