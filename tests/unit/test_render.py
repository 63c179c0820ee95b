"""Prompt rendering: tools in the system prompt, billing block dropped, mid-conversation
system messages kept in place, a forced tool call, and a stable prefix across turns."""

from __future__ import annotations

import copy

import pytest

from agentport.api import anthropic
from agentport.chat.render import render
from agentport.chat.template import CHATML_TEMPLATE, ChatTemplate
from agentport.errors import InvalidRequestError, UnsupportedContentError

SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
STRICT = (
    "{% for m in messages %}{% if m['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('System message must be at the beginning') }}{% endif %}"
    "[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
)
NATIVE_TOOLS = (
    "{% if tools %}TOOLS:{% for t in tools %}{{ t['function']['name'] }};{% endfor %}{% endif %}"
    "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}"
    "{% for c in m.get('tool_calls', []) %}CALL {{ c['function']['name'] }}{% endfor %}"
    "{% endfor %}"
)

TOOLS = [
    {
        "name": f"Tool{i}",
        "description": f"tool {i}",
        "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}},
    }
    for i in range(24)
]


def claude_turn(billing: str, turns: int) -> dict:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": "fix the bug"},
            ],
        },
        {"role": "system", "content": "Mid-conversation reminder."},
    ]
    for i in range(turns):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {
                        "type": "tool_use",
                        "id": f"toolu_{i}",
                        "name": "Tool1",
                        "input": {"x": str(i)},
                    },
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": f"result {i}"}
                ],
            }
        )
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1; cch={billing};"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": TOOLS,
        "messages": messages,
    }


def rendered(body: dict, source: str = SMOLLM2) -> str:
    return render(anthropic.decode_messages(body), ChatTemplate(source), "m").text


def test_consecutive_claude_code_turns_share_the_whole_prefix():
    first = rendered(claude_turn("aaaa", 0))
    second = rendered(claude_turn("bbbb", 1))
    assert "billing" not in first and "aaaa" not in first
    closing = "<|im_start|>assistant\n"
    assert first.endswith(closing)
    assert second.startswith(first)


def test_tools_go_into_the_system_prompt_after_the_client_system_text():
    text = rendered(claude_turn("x", 0))
    assert text.startswith("<|im_start|>system\nYou are Claude Code.\n\n# Tools")
    assert text.count('"type": "function"') == 24
    assert "<tool_call>" in text


def test_history_renders_calls_and_results():
    text = rendered(claude_turn("x", 1))
    assert '<tool_call>\n{"name": "Tool1", "arguments": {"x": "0"}}\n</tool_call>' in text
    assert "<tool_response>\nresult 0\n</tool_response>" in text


def test_mid_conversation_system_message_stays_in_place():
    text = rendered(claude_turn("x", 1))
    user = text.index("fix the bug")
    system = text.index("<|im_start|>system\nMid-conversation reminder.")
    call = text.index('"arguments": {"x": "0"}')
    assert user < system < call


def test_a_template_that_rejects_mid_system_gets_it_as_a_user_turn_in_place():
    text = rendered(claude_turn("x", 0), STRICT)
    assert "[user][system]\nMid-conversation reminder." in text
    assert text.index("fix the bug") < text.index("Mid-conversation")


def test_native_tool_templates_receive_tools_and_calls():
    text = rendered(claude_turn("x", 1), NATIVE_TOOLS)
    assert text.startswith("TOOLS:Tool0;Tool1;")
    assert "CALL Tool1" in text and "[tool]result 0" in text
    assert "# Tools" not in text


def test_forced_tool_call_primes_the_answer():
    body = claude_turn("x", 0) | {"tool_choice": {"type": "tool", "name": "Tool3"}}
    prompt = render(anthropic.decode_messages(body), ChatTemplate(SMOLLM2), "m")
    assert prompt.forced_prefix == '<tool_call>\n{"name": "Tool3", "arguments": '
    assert prompt.text.endswith("<|im_start|>assistant\n" + prompt.forced_prefix)


def test_images_on_a_text_model_are_refused():
    body = copy.deepcopy(claude_turn("x", 0))
    body["messages"][0]["content"].append(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A"}}
    )
    with pytest.raises(UnsupportedContentError, match="does not support images"):
        rendered(body)


def test_a_template_that_always_raises_gives_a_clear_400():
    with pytest.raises(InvalidRequestError, match="rejected the conversation"):
        rendered(claude_turn("x", 0), "{{ raise_exception('no') }}")


def test_templates_run_sandboxed():
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InvalidRequestError):
        rendered(claude_turn("x", 0), evil)


def test_missing_template_falls_back_to_chatml():
    assert ChatTemplate(None).source == CHATML_TEMPLATE
