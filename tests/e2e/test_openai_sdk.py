"""The official `openai` Python SDK against a real agentport server: chat (plain, streamed,
tools, structured output), completions, embeddings, models and errors."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

MODEL = "smollm2:135m"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "Name of the city"}},
            "required": ["city"],
        },
    },
}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_non_streaming(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=ask("Say hello."), max_tokens=16, temperature=0
    )
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == MODEL
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens >= 0


def test_chat_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "developer", "content": "Be brief."}] + ask("Name three colors."),
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1


def test_tool_round_trip(client):
    messages = ask("What is the weather in Paris?")
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=64
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C."},
    ]
    answer = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], max_tokens=16, temperature=0
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    message = answer.choices[0].message
    assert message.content or message.tool_calls


def test_streamed_tool_call_arguments_parse(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ask("Weather in Oslo?"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"name": None, "arguments": ""})
            call["name"] = call["name"] or delta.function.name
            call["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert "city" in json.loads(calls[0]["arguments"])


def check_person(value: object) -> None:
    """A hand-written check of PERSON_SCHEMA."""
    assert isinstance(value, dict) and set(value) == {"name", "age"}
    assert isinstance(value["name"], str) and len(value["name"]) <= 20
    assert isinstance(value["age"], int) and 0 <= value["age"] <= 150


def test_json_schema_output(client):
    reply = client.chat.completions.create(
        model=MODEL,
        messages=ask("Invent a person. Answer in JSON with name and age."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
        max_tokens=200,
        temperature=0,
    )
    check_person(json.loads(reply.choices[0].message.content))


def test_json_object_output(client):
    reply = client.chat.completions.create(
        model=MODEL,
        messages=ask("Give a JSON object with a key 'color'."),
        response_format={"type": "json_object"},
        max_tokens=16,
        temperature=0,
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    else:  # cut at max_tokens: still a prefix of a JSON object
        assert reply.choices[0].message.content.lstrip().startswith("{")


def test_completions(client):
    reply = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.object == "text_completion" and reply.choices[0].text
    assert reply.usage.completion_tokens <= 8
    chunks = list(
        client.completions.create(
            model=MODEL, prompt=["Once upon a time"], max_tokens=8, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_embeddings(client):
    result = client.embeddings.create(model=MODEL, input=["hello world", "a second text"])
    assert [d.index for d in result.data] == [0, 1]
    vector = result.data[0].embedding
    assert len(vector) > 0
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)
    assert result.usage.prompt_tokens > 0


def test_embeddings_base64(server):
    body = {"model": MODEL, "input": "hello world", "encoding_format": "base64"}
    data = httpx.post(server.url + "/v1/embeddings", json=body, timeout=120).json()["data"]
    raw = base64.b64decode(data[0]["embedding"])
    vector = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model" and model.owned_by == "agentport"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model:1b")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model:1b", messages=ask("hi"), max_tokens=4)


def test_n_greater_than_one_is_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=4, n=2)
    assert caught.value.body["param"] == "n"


def test_malformed_body_is_a_400(server):
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_models_in_the_anthropic_shape(server):
    headers = {"anthropic-version": "2023-06-01"}
    page = httpx.get(server.url + "/v1/models", headers=headers).json()
    assert page["has_more"] is False and page["data"][0]["type"] == "model"
    one = httpx.get(server.url + f"/v1/models/{MODEL}", headers=headers).json()
    assert one["type"] == "model" and one["id"] == MODEL
