"""The Anthropic Messages API over HTTP, on the real engine and the embedded model."""

from __future__ import annotations

import json
import re

import httpx
import pytest

HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "anything"}
READ_TOOL = {
    "name": "read_file",
    "description": "Read a file from the workspace.",
    "input_schema": {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "Path of the file"}},
        "required": ["path"],
    },
}


def ask(api: httpx.Client, text: str, **body) -> httpx.Response:
    payload = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
    } | body
    return api.post("/v1/messages?beta=true", json=payload, headers=HEADERS)


def sse(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_root_answers_head_and_get(api):
    assert api.head("/").status_code == 200
    assert api.get("/").status_code == 200


def test_non_streaming_message(api):
    response = ask(api, "Say hello.")
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "claude-sonnet-4-5"
    assert message["content"][0]["type"] == "text" and message["content"][0]["text"]
    assert message["stop_reason"] in ("end_turn", "max_tokens")
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0


def test_streaming_message_event_order(api):
    response = ask(api, "Name three colors.", stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in sse(response) if name != "ping"]
    assert names[0] == "message_start"
    assert names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}


def test_max_tokens_stop_reason(api):
    message = ask(api, "Write a long story about a dragon.", max_tokens=5).json()
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 5


def test_stop_sequences(api):
    free = ask(api, "Count from one to twenty in words.", max_tokens=40).json()
    text = free["content"][0]["text"]
    words = text.split()
    assert len(words) > 4, text
    stop = words[3]
    stopped = ask(
        api, "Count from one to twenty in words.", max_tokens=40, stop_sequences=[stop]
    ).json()
    assert stopped["stop_reason"] == "stop_sequence"
    assert stopped["stop_sequence"] == stop
    assert stopped["content"][0]["text"] == text[: text.index(stop)].lstrip()


def test_tool_round_trip(api):
    first = ask(
        api, "Show me README.md", tools=[READ_TOOL], tool_choice={"type": "any"}, max_tokens=64
    ).json()
    assert first["stop_reason"] == "tool_use", first
    call = next(b for b in first["content"] if b["type"] == "tool_use")
    assert call["name"] == "read_file" and call["id"].startswith("toolu_")
    assert isinstance(call["input"], dict)
    messages = [
        {"role": "user", "content": "Show me README.md"},
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": "# agentport\nA local runtime.",
                }
            ],
        },
    ]
    second = api.post(
        "/v1/messages",
        headers=HEADERS,
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 48,
            "temperature": 0,
            "tools": [READ_TOOL],
            "messages": messages,
        },
    ).json()
    assert second["type"] == "message", second
    assert second["stop_reason"] in ("end_turn", "max_tokens", "tool_use")
    assert second["content"]


def test_count_tokens_matches_input_tokens(api):
    body = {
        "model": "claude-sonnet-4-5",
        "tools": [READ_TOOL],
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": "Count my tokens, please."}],
    }
    counted = api.post("/v1/messages/count_tokens?beta=true", json=body, headers=HEADERS)
    assert counted.status_code == 200
    message = api.post("/v1/messages", json=body | {"max_tokens": 4}, headers=HEADERS).json()
    usage = message["usage"]  # input_tokens counts only what was not read from cache
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    assert counted.json()["input_tokens"] == prompt + usage["cache_creation_input_tokens"]


def test_prompt_too_long_wording(api):
    response = ask(api, "hello " * 40000)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert re.fullmatch(
        r"prompt is too long: \d+ tokens > 32768 maximum", error["error"]["message"]
    )


def test_second_turn_reuses_the_prefix(api):
    system = "You are a coding assistant. " * 40
    turn1 = [{"role": "user", "content": "What is a Python list?"}]
    first = api.post(
        "/v1/messages",
        headers=HEADERS,
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "temperature": 0,
            "system": system,
            "messages": turn1,
        },
    ).json()
    turn2 = turn1 + [
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "And a tuple?"},
    ]
    second = api.post(
        "/v1/messages",
        headers=HEADERS,
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "temperature": 0,
            "system": system,
            "messages": turn2,
        },
    ).json()
    assert second["usage"]["cache_read_input_tokens"] >= first["usage"]["input_tokens"] * 0.95


def test_unknown_model_is_404_naming_models(api):
    response = ask(api, "hi", model="no-such-model:7b")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error" and "smollm2:135m" in error["message"]


@pytest.mark.parametrize(
    "content,status,fragment",
    [
        (
            [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                }
            ],
            400,
            "images",
        ),
    ],
)
def test_image_on_text_model(api, content, status, fragment):
    response = ask(api, content)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw,status",
    [
        (b"{not json", 400),
        (b'{"model": "m"}', 400),
        (b'{"model": 5, "max_tokens": "x", "messages": 3}', 400),
        (b"[]", 400),
    ],
)
def test_malformed_bodies_are_400_in_anthropic_shape(api, raw, status):
    response = api.post("/v1/messages", content=raw, headers=HEADERS)
    assert response.status_code == status
    assert response.json()["type"] == "error"


def test_models_listing_in_anthropic_shape(api):
    page = api.get("/v1/models", headers=HEADERS).json()
    assert any(m["id"] == "smollm2:135m" and m["type"] == "model" for m in page["data"])


def test_foreign_host_header_is_refused(api):
    response = api.get("/api/tags", headers={"host": "evil.example.com"})
    assert response.status_code == 403


def test_ps_reports_context_and_yarn(api):
    models = api.get("/api/ps").json()["models"]
    row = next(m for m in models if m["name"] == "smollm2:135m")
    assert row["context_length"] == 32768
    assert row["rope_scaling"] == "yarn x4 from 8192"


# A tool result read from a binary file can carry lone surrogate escapes; each dialect answers.
LONE_SURROGATES = "binary \\ud800 data \\udfff end"
SURROGATE_BODIES = {
    "/v1/messages": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4,
        "messages": [
            {"role": "user", "content": "Read it."},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "MARK"}],
            },
        ],
    },
    "/v1/chat/completions": {
        "model": "smollm2:135m",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "MARK"}],
    },
    "/v1/responses": {"model": "smollm2:135m", "max_output_tokens": 4, "input": "MARK"},
    "/api/chat": {
        "model": "smollm2:135m",
        "stream": False,
        "options": {"num_predict": 4},
        "messages": [{"role": "user", "content": "MARK"}],
    },
}


@pytest.mark.parametrize("path", SURROGATE_BODIES)
@pytest.mark.parametrize("stream", [False, True])
def test_lone_surrogates_are_answered_in_every_dialect(api, path, stream):
    body = SURROGATE_BODIES[path] | {"stream": stream}
    raw = json.dumps(body).replace("MARK", LONE_SURROGATES)
    response = api.post(path, content=raw, headers=HEADERS | {"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert not re.search(r'"error": ?[{"]', response.text), response.text  # no error event
    assert "response.failed" not in response.text


EXTREME_NUMBERS = [
    ("/v1/messages", {"max_tokens": 2**62, "top_k": 2**62, "seed": 2**63}),
    ("/v1/chat/completions", {"max_tokens": 4, "seed": 2**64 - 1, "top_k": 2**40}),
    ("/api/chat", {"options": {"num_predict": 4, "top_k": 2**62, "repeat_last_n": 2**62}}),
]


@pytest.mark.parametrize("path,fields", EXTREME_NUMBERS)
def test_extreme_numbers_in_range_never_fail_the_server(api, path, fields):
    body = SURROGATE_BODIES[path] | fields
    raw = json.dumps(body).replace("MARK", "Say hi.")
    response = api.post(path, content=raw, headers=HEADERS | {"content-type": "application/json"})
    assert response.status_code < 500, response.text
