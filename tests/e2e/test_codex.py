"""The official `openai` SDK's Responses client and the real Codex CLI against a live server."""

from __future__ import annotations

import json
import os
import subprocess

import openai
import pytest

MODEL = "smollm2:135m"
READ_TOOL = {
    "type": "function",
    "name": "read_file",
    "description": "Read a file.",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
}


@pytest.fixture
def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="agentport", max_retries=0)


def test_sdk_creates_a_response(sdk):
    response = sdk.responses.create(model=MODEL, input="Say hi", max_output_tokens=32)
    assert response.object == "response" and response.model == MODEL
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message" and response.output_text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"


def test_sdk_streams_a_response(sdk):
    with sdk.responses.stream(
        model=MODEL, input="Say hi", max_output_tokens=32, temperature=0
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    assert final.status in ("completed", "incomplete") and final.usage.output_tokens > 0


def test_sdk_raw_stream_sequence_numbers(sdk):
    events = list(
        sdk.responses.create(model=MODEL, input="Say hi", max_output_tokens=8, stream=True)
    )
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_sdk_forced_function_call(sdk):
    response = sdk.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "You can read files."},
            {"role": "user", "content": "Open setup.py"},
        ],
        tools=[READ_TOOL, {"type": "web_search"}],
        tool_choice="required",
        max_output_tokens=128,
    )
    call = next(item for item in response.output if item.type == "function_call")
    assert call.name == "read_file" and call.call_id
    assert isinstance(json.loads(call.arguments), dict)
    follow_up = sdk.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Open setup.py"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "print('hi')"},
        ],
        tools=[READ_TOOL],
        max_output_tokens=16,
    )
    assert follow_up.output


def test_sdk_errors_are_typed(sdk):
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="missing:1b", input="hi", max_output_tokens=8)
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model=MODEL, input=[], max_output_tokens=8)


def codex_env(home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(HOME=str(home), AGENTPORT_TEST_KEY="agentport", NO_COLOR="1")
    return env


def codex_command(codex_bin, server, prompt: str) -> list[str]:
    provider = (
        f'{{name="local",base_url="{server.url}/v1",wire_api="responses",'
        'env_key="AGENTPORT_TEST_KEY"}'
    )
    return [
        str(codex_bin),
        "exec",
        "--skip-git-repo-check",
        "-c",
        "model_provider=local",
        "-c",
        f"model_providers.local={provider}",
        "-m",
        MODEL,
        prompt,
    ]


@pytest.mark.slow
def test_codex_exec(server, codex_bin, tmp_path):
    """Codex's real request: its system prompt, tools and `response.completed` handling."""
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    result = subprocess.run(
        codex_command(codex_bin, server, "Say hello"),
        cwd=cwd,
        env=codex_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "stream disconnected" not in output and "error sending request" not in output
    assert "tokens used" in output, output[-4000:]
