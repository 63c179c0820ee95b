"""Core requests -> prompt text, through the model's own chat template.

Tools go to the template when it accepts them; otherwise into the system prompt in the format
documented in `tools_prompt.py`. A `system` message in the middle of a conversation stays where
it is; a template that refuses it gets it as a user turn in the same place. Claude Code's
per-request billing block is dropped so the prompt prefix is identical from turn to turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentport.chat import tool_calls, tools_prompt
from agentport.chat.families import family_for
from agentport.chat.template import ChatTemplate, TemplateRaised
from agentport.core import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    ToolResultPart,
    ToolUsePart,
)
from agentport.errors import InvalidRequestError, UnsupportedContentError

# Claude Code puts this first in `system`; its hash changes on every request.
VOLATILE_PREFIXES = ("x-anthropic-billing-header:",)


@dataclass(slots=True)
class RenderedPrompt:
    text: str
    forced_prefix: str = ""  # generation starts after this text (a forced tool call)
    native_tools: bool = False


def render(
    request: ChatRequest,
    template: ChatTemplate,
    model: str = "",
    name_in_prefix: bool = True,
    family: str | None = None,
) -> RenderedPrompt:
    """The prompt text; a forced call's answer starts in the syntax of `family` (the model's,
    as the runtime detected it; by default the template's)."""
    native = bool(request.tools) and template.supports_tools
    messages = _template_messages(request, native, model)
    tools = [tools_prompt.openai_function(t) for t in request.tools] if native else None
    extra: dict[str, Any] = {}
    if request.thinking is not None and template.supports_thinking_switch:
        extra["enable_thinking"] = request.thinking
    text = _render_with_fallbacks(template, messages, tools, extra)
    family = tool_calls.prompt_family(family or family_for(template.source), native)
    prefix = tool_calls.forced_prefix(request, family, name_in_prefix)
    return RenderedPrompt(text=text + prefix, forced_prefix=prefix, native_tools=native)


def is_volatile(text: str) -> bool:
    return text.lstrip().startswith(VOLATILE_PREFIXES)


def _template_messages(request: ChatRequest, native: bool, model: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        if message.role == "system":
            text = _system_text(message)
            if index == 0 and request.tools and not native:
                text = "\n\n".join(t for t in (text, tools_prompt.tools_block(request.tools)) if t)
            if text:
                out.append({"role": "system", "content": text})
        elif message.role == "assistant":
            out.append(_assistant(message, native))
        else:
            out.extend(_user_or_tool(message, native, model))
    if request.tools and not native and not (request.messages[:1] and _is_system(request)):
        out.insert(0, {"role": "system", "content": tools_prompt.tools_block(request.tools)})
    return out


def _is_system(request: ChatRequest) -> bool:
    return request.messages[0].role == "system"


def _system_text(message: Message) -> str:
    texts = [p.text for p in message.content if isinstance(p, TextPart) and not is_volatile(p.text)]
    return "\n\n".join(t for t in texts if t)


def _assistant(message: Message, native: bool) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolUsePart):
            if native:
                calls.append(_native_call(part))
            else:
                texts.append(tools_prompt.tool_call_text(part.name, part.input))
    entry: dict[str, Any] = {"role": "assistant", "content": "\n".join(t for t in texts if t)}
    if calls:
        entry["tool_calls"] = calls
    return entry


def _native_call(part: ToolUsePart) -> dict[str, Any]:
    return {
        "id": part.id,
        "type": "function",
        "function": {"name": part.name, "arguments": part.input},
    }


def _user_or_tool(message: Message, native: bool, model: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    for part in message.content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolResultPart):
            content = tool_result_text(part)
            if native:
                out.append(_native_result(part, content))
            else:
                texts.append(tools_prompt.tool_response_text(content))
        elif isinstance(part, ImagePart):
            raise UnsupportedContentError(
                f"model '{model}' does not support images; send text only"
            )
    if texts or not out:
        out.append({"role": "user", "content": "\n".join(t for t in texts if t)})
    return out


def _native_result(part: ToolResultPart, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": part.tool_use_id, "name": part.name, "content": content}


def tool_result_text(part: ToolResultPart) -> str:
    texts = []
    for inner in part.content:
        if isinstance(inner, TextPart):
            texts.append(inner.text)
        elif isinstance(inner, ImagePart):
            texts.append("[image omitted: the model does not support images]")
    text = "\n".join(texts)
    return f"Error: {text}" if part.is_error else text


def _render_with_fallbacks(
    template: ChatTemplate,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    extra: dict[str, Any],
) -> str:
    attempts = [messages, _mid_system_as_user(messages), _all_system_as_user(messages)]
    last: TemplateRaised | None = None
    for attempt in attempts:
        try:
            return template.render(attempt, tools=tools, **extra)
        except TemplateRaised as exc:
            last = exc
    raise InvalidRequestError(f"the model's chat template rejected the conversation: {last}")


def _mid_system_as_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"[system]\n{m['content']}"}
        if m["role"] == "system" and i > 0
        else m
        for i, m in enumerate(messages)
    ]


def _all_system_as_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"[system]\n{m['content']}"} if m["role"] == "system" else m
        for m in messages
    ]
