"""The real Claude Code CLI and the official `anthropic` SDK against a live server."""

from __future__ import annotations

import json
import os
import subprocess

import anthropic
import pytest

READ_TOOL = {
    "name": "read_file",
    "description": "Read a file.",
    "input_schema": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
}


@pytest.fixture
def sdk(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="agentport", max_retries=0)


def test_sdk_streams_a_message(sdk):
    with sdk.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=32,
        messages=[{"role": "user", "content": "Say hello in one sentence."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_sdk_tool_use_and_count_tokens(sdk):
    message = sdk.messages.create(
        model="claude-haiku-4-5",
        max_tokens=256,
        tools=[READ_TOOL],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Open setup.py"}],
    )
    assert message.stop_reason == "tool_use"
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.name == "read_file" and isinstance(call.input, dict)
    counted = sdk.messages.count_tokens(
        model="claude-haiku-4-5",
        tools=[READ_TOOL],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Open setup.py"}],
    )
    usage = message.usage  # input_tokens counts only what was not read from cache
    prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == prompt + (usage.cache_creation_input_tokens or 0)


def test_sdk_errors_are_typed(sdk):
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(
            model="missing:1b", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[])


def claude_env(server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(
        ANTHROPIC_BASE_URL=server.url,
        ANTHROPIC_AUTH_TOKEN="agentport",
        ANTHROPIC_API_KEY="",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_ATTRIBUTION_HEADER="0",
        DISABLE_AUTOUPDATER="1",
        # The tiny model at Claude Code's temperature 1 can ramble for thousands of tokens, and
        # decode 20k tokens deep runs at a few tokens/s on 2 cores: bound each answer.
        CLAUDE_CODE_MAX_OUTPUT_TOKENS="48",
        HOME=str(server.home / "claude-home"),
    )
    return env


@pytest.mark.slow
def test_claude_code_print_mode(server, claude_bin, tmp_path):
    """Claude Code's real request: its system prompt and built-in tools, about 20k tokens."""
    (server.home / "claude-home").mkdir(exist_ok=True)
    result = subprocess.run(
        [
            str(claude_bin),
            "-p",
            "Reply with one short sentence: what is 2+2?",
            "--output-format",
            "json",
            "--model",
            "claude-sonnet-4-5",
            "--max-turns",
            "8",
        ],
        cwd=tmp_path,
        env=claude_env(server),
        capture_output=True,
        text=True,
        timeout=2400,  # a cold 20k-token prompt: minutes on 2 cores, more when shared
    )
    report = json.loads(result.stdout)
    assert report["type"] == "result", result.stderr[-2000:]
    # Every request reached the server and came back well-formed: no HTTP error status.
    assert report.get("api_error_status") is None, report
    usage = report["usage"]  # Anthropic's input_tokens excludes what was read from cache
    prompt = usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
    assert prompt > 15_000, usage
    if report["is_error"]:
        # The only failure allowed is the tiny model's own verbosity: at temperature 1 it can
        # fill the bounded answer on every retry, which Claude Code reports as an error.
        assert report.get("api_error") == "max_output_tokens", report
    else:
        assert result.returncode == 0, result.stderr[-2000:]
    if report["num_turns"] > 1:
        assert report["usage"]["cache_read_input_tokens"] > 0, report["usage"]
