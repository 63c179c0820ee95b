"""The official `ollama` Python client against a real agentport server and the embedded model:
chat, generate, tools, structured output, embeddings, model management and errors.

The model is tiny: these tests check the protocol (shapes, types, counts), not the answers."""

from __future__ import annotations

import json
import math
import time

import ollama
import pytest

MODEL = "smollm2:135m"
SHORT = {"num_predict": 8, "temperature": 0}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def client(server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=300)


def assert_final(response) -> None:
    assert response.done is True
    assert response.done_reason in ("stop", "length")
    for field in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(response[field], int) and response[field] >= 0
    assert isinstance(response.prompt_eval_count, int) and response.prompt_eval_count >= 0
    assert 0 < response.eval_count <= SHORT["num_predict"]


def test_chat(client):
    messages = [{"role": "user", "content": "Say hello."}]
    response = client.chat(MODEL, messages=messages, options=SHORT, stream=False)
    assert response.model == MODEL and response.message.role == "assistant"
    assert isinstance(response.message.content, str) and response.message.content
    assert response.created_at.endswith("Z")
    assert_final(response)


def test_chat_stream(client):
    messages = [{"role": "user", "content": "Count to three."}]
    chunks = list(client.chat(MODEL, messages=messages, options=SHORT, stream=True))
    assert len(chunks) >= 2
    assert all(c.done is False for c in chunks[:-1])
    assert "".join(c.message.content or "" for c in chunks)
    assert_final(chunks[-1])


def test_generate(client):
    response = client.generate(MODEL, prompt="The sky is", options=SHORT, stream=False)
    assert response.response and response.model == MODEL
    assert_final(response)
    chunks = list(client.generate(MODEL, prompt="Once upon a time", options=SHORT, stream=True))
    assert chunks[-1].done and "".join(c.response for c in chunks[:-1])


def test_tools_are_accepted(client):
    messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
    response = client.chat(MODEL, messages=messages, tools=[WEATHER], options=SHORT)
    assert response.done and response.message.role == "assistant"
    for call in response.message.tool_calls or []:
        assert isinstance(call.function.arguments, dict)


def test_tool_round_trip_history(client):
    messages = [
        {"role": "user", "content": "What is the weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 21 C"},
    ]
    response = client.chat(MODEL, messages=messages, tools=[WEATHER], options=SHORT)
    assert response.done and response.message.role == "assistant"


def test_format_json_schema(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
    }
    messages = [{"role": "user", "content": "What is 2 + 2? Answer in JSON."}]
    options = {"num_predict": 48, "temperature": 0}
    response = client.chat(MODEL, messages=messages, format=schema, options=options)
    data = json.loads(response.message.content)
    assert isinstance(data["answer"], int) and isinstance(data["sure"], bool)


def norm(vector) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_embed_and_embeddings(client):
    response = client.embed(MODEL, input=["hello", "a longer sentence to embed"])
    assert response.model == MODEL and len(response.embeddings) == 2
    width = len(response.embeddings[0])
    assert width > 0 and all(len(v) == width for v in response.embeddings)
    assert all(abs(norm(v) - 1.0) < 1e-3 for v in response.embeddings)
    assert response.prompt_eval_count > 0
    single = client.embed(MODEL, input="hello")
    assert len(single.embeddings) == 1
    old = client.embeddings(MODEL, prompt="hello")
    assert len(old.embedding) == width


def test_list_show_ps_version(client):
    names = [m.model for m in client.list().models]
    assert MODEL in names
    shown = client.show(MODEL)
    assert {"completion", "tools", "embedding"} <= set(shown.capabilities)
    assert "vision" not in shown.capabilities
    arch = shown.modelinfo["general.architecture"]
    assert shown.modelinfo[f"{arch}.context_length"] > 0
    assert shown.modelinfo["agentport.context_length"] > 0
    assert shown.template and shown.details.format == "gguf"
    client.generate(MODEL, prompt="hi", options={"num_predict": 1})
    running = {m.model: m for m in client.ps().models}
    assert running[MODEL].context_length == shown.modelinfo["agentport.context_length"]
    assert running[MODEL].expires_at is not None and running[MODEL].size > 0
    assert client._client.get("/api/version").json()["version"]


def test_copy_then_delete(client):
    assert client.copy(MODEL, "smollm2:copy").status == "success"
    assert "smollm2:copy" in [m.model for m in client.list().models]
    assert client.delete("smollm2:copy").status == "success"
    assert "smollm2:copy" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as error:
        client.delete("smollm2:copy")
    assert error.value.status_code == 404
    assert client.generate(MODEL, prompt="Hi", options=SHORT).done


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat("no-such-model:1b", messages=[{"role": "user", "content": "hi"}]),
        lambda c: list(c.generate("no-such-model:1b", prompt="hi", stream=True)),
        lambda c: c.show("no-such-model:1b"),
        lambda c: c.embed("no-such-model:1b", input="hi"),
        lambda c: c.copy("no-such-model:1b", "other:1b"),
    ],
)
def test_unknown_model_is_404(client, call):
    with pytest.raises(ollama.ResponseError) as error:
        call(client)
    assert error.value.status_code == 404
    assert "not found" in error.value.error


def test_images_are_refused(client):
    messages = [{"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}]
    with pytest.raises(ollama.ResponseError) as error:
        client.chat(MODEL, messages=messages)
    assert error.value.status_code == 400


def test_load_and_unload(client):
    loaded = client.generate(MODEL, prompt="")
    assert loaded.done and loaded.done_reason == "load"
    unloaded = client.generate(MODEL, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert MODEL not in [m.model for m in client.ps().models]
    chat_load = client.chat(MODEL, messages=[], keep_alive="5m")
    assert chat_load.done_reason == "load" and chat_load.message.content == ""
    assert MODEL in [m.model for m in client.ps().models]


def test_keep_alive_zero_unloads_after_the_request(client):
    response = client.generate(MODEL, prompt="Hi", options=SHORT, keep_alive=0)
    assert response.done
    deadline = time.monotonic() + 10
    while MODEL in [m.model for m in client.ps().models] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert MODEL not in [m.model for m in client.ps().models]
    assert client.generate(MODEL, prompt="", keep_alive="5m").done_reason == "load"
