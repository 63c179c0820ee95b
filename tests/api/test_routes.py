"""The route table and the one chat handler, on a fake runtime: every chat codec answers
streamed and whole, Ollama's load-only requests, and hostile bodies (wrong types, huge numbers,
deep nesting, lone surrogates, bodies past the limit) answered in each dialect's shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from agentport.api import anthropic
from agentport.config import Settings
from agentport.core import ChatRequest, Done, FinishReason, PromptStart, TextDelta, Usage
from agentport.errors import RequestTooLargeError
from agentport.server.app import create_app
from agentport.server.body import read_body
from agentport.server.routes import ROUTES

USER = {"role": "user", "content": "hi"}


class FakeRuntime:
    """What the chat handler and the listing routes use of the Runtime; it answers "Hello"."""

    def __init__(self) -> None:
        self.prepared: list[ChatRequest] = []
        self.actions: list[tuple[str, str]] = []
        self.models: dict[str, object] = {}
        self.store = SimpleNamespace(list=lambda: [])

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def prepare(self, chat: ChatRequest) -> ChatRequest:
        self.prepared.append(chat)
        return chat

    async def generate(self, chat: ChatRequest) -> AsyncIterator[list]:
        yield [PromptStart(input_tokens=3, model=chat.model), TextDelta("Hello")]
        yield [Done(FinishReason.STOP, Usage(input_tokens=3, output_tokens=1))]

    def find(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(name=SimpleNamespace(display=name), modified=0.0)

    async def model(self, name: str) -> str:
        self.actions.append(("load", name))
        return name

    def keep(self, loaded: str, keep_alive: object) -> None:
        self.actions.append(("keep", loaded))

    async def unload(self, name: str) -> None:
        self.actions.append(("unload", name))


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


def client(runtime: FakeRuntime, **settings) -> TestClient:
    app = create_app(Settings(**settings), runtime)  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:11434", raise_server_exceptions=False)


# --- the table ---------------------------------------------------------------------------------


def test_every_route_is_declared_once_and_installed(runtime):
    declared = [(r.path, m) for r in ROUTES for m in r.methods]
    assert len(declared) == len(set(declared))
    installed = {
        (route.path, method)
        for route in client(runtime).app.routes
        for method in getattr(route, "methods", None) or ()
    }
    assert set(declared) <= installed


# --- the chat handler --------------------------------------------------------------------------

CHATS = [
    (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": [USER]},
        lambda answer: answer["content"] == [{"type": "text", "text": "Hello"}],
        "event: message_stop",
    ),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [USER]},
        lambda answer: answer["choices"][0]["message"]["content"] == "Hello",
        "data: [DONE]",
    ),
    (
        "/v1/completions",
        {"model": "m", "prompt": "hi"},
        lambda answer: answer["choices"][0]["text"] == "Hello",
        "data: [DONE]",
    ),
    (
        "/v1/responses",
        {"model": "m", "input": "hi"},
        lambda answer: answer["output"][0]["content"][0]["text"] == "Hello",
        "event: response.completed",
    ),
    (
        "/api/chat",
        {"model": "m", "messages": [USER]},
        lambda answer: answer["message"]["content"] == "Hello",
        '"done": true',
    ),
    (
        "/api/generate",
        {"model": "m", "prompt": "hi"},
        lambda answer: answer["response"] == "Hello",
        '"done": true',
    ),
]


@pytest.mark.parametrize("path,body,whole,last", CHATS)
def test_each_codec_answers_whole(runtime, path, body, whole, last):
    response = client(runtime).post(path, json=body | {"stream": False})
    assert response.status_code == 200, response.text
    assert whole(response.json())
    assert runtime.prepared[0].model == "m" and runtime.prepared[0].stream is False


@pytest.mark.parametrize("path,body,whole,last", CHATS)
def test_each_codec_streams(runtime, path, body, whole, last):
    response = client(runtime).post(path, json=body | {"stream": True})
    assert response.status_code == 200, response.text
    media = "application/x-ndjson" if path.startswith("/api/") else "text/event-stream"
    assert response.headers["content-type"].startswith(media)
    assert "Hello" in response.text and last in response.text


def test_anthropic_session_header_reaches_the_request(runtime):
    body = {"model": "m", "max_tokens": 8, "messages": [USER]}
    headers = {anthropic.SESSION_HEADER: "session-1"}
    assert client(runtime).post("/v1/messages", json=body, headers=headers).status_code == 200
    assert runtime.prepared[0].session_id == "session-1"


@pytest.mark.parametrize("path,key", [("/api/chat", "message"), ("/api/generate", "response")])
def test_ollama_load_and_unload_requests(runtime, path, key):
    api = client(runtime)
    loaded = api.post(path, json={"model": "m"}).json()
    unloaded = api.post(path, json={"model": "m", "keep_alive": 0}).json()
    assert loaded["done_reason"] == "load" and key in loaded
    assert unloaded["done_reason"] == "unload"
    assert runtime.actions == [("load", "m"), ("keep", "m"), ("unload", "m")]
    assert runtime.prepared == []


# --- hostile bodies ----------------------------------------------------------------------------

DIALECT_BODIES = {
    "/v1/messages": {"model": "m", "max_tokens": 8, "messages": [USER]},
    "/v1/chat/completions": {"model": "m", "messages": [USER]},
    "/v1/responses": {"model": "m", "input": "hi"},
    "/api/chat": {"model": "m", "messages": [USER], "stream": False},
}


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


HOSTILE = [
    ("wrong types", json.dumps({"model": 5, "messages": "hi", "input": 5, "max_tokens": "x"})),
    ("not an object", "[1, 2]"),
    ("empty", ""),
    ("not JSON", "{model"),
    ("invalid UTF-8", b'{"model": "\xff\xfe"}'),
    ("huge integer", '{"model": "m", "max_tokens": 1' + "0" * 40 + "}"),
    ("integer of 5000 digits", '{"model": "m", "max_tokens": ' + "9" * 5000 + "}"),
    ("infinite float", '{"model": "m", "temperature": 1e400}'),
    ("NaN", '{"model": "m", "temperature": NaN}'),
    ("deep nesting inside a field", '{"model": "m", "metadata": ' + nested(200) + "}"),
    ("deep nesting past the parser", "[" * 100_000 + "]" * 100_000),
]


def assert_dialect_error(path: str, response) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    if path.startswith("/api/"):
        assert isinstance(body["error"], str)
    elif path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", DIALECT_BODIES)
@pytest.mark.parametrize("name,content", HOSTILE, ids=[name for name, _ in HOSTILE])
def test_hostile_bodies_are_4xx_in_the_dialect(runtime, path, name, content):
    response = client(runtime).post(path, content=content)
    assert_dialect_error(path, response)
    assert runtime.prepared == []


@pytest.mark.parametrize("path", DIALECT_BODIES)
def test_unknown_fields_are_accepted(runtime, path):
    body = DIALECT_BODIES[path] | {"x_future_field": {"anything": [1, 2]}}
    assert client(runtime).post(path, json=body).status_code == 200


@pytest.mark.parametrize("path", DIALECT_BODIES)
def test_lone_surrogates_become_replacement_characters(runtime, path):
    escaped = '"bin \\ud800 \\uDFFF ok \\ud83d\\ude00"'  # lone high, lone low, a pair
    text = json.dumps(DIALECT_BODIES[path]).replace('"hi"', escaped)
    response = client(runtime).post(path, content=text)
    assert response.status_code == 200, response.text
    (message,) = [m for m in runtime.prepared[0].messages if m.role == "user"]
    assert message.text() == "bin \ufffd \ufffd ok \U0001f600"


@pytest.mark.parametrize("path", DIALECT_BODIES)
def test_bodies_past_the_limit_are_413_while_streaming_in(runtime, path):
    def chunks():
        yield b'{"model": "m", "pad": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}'

    response = client(runtime, max_body_bytes=4096).post(path, content=chunks())
    assert response.status_code == 413
    assert "error" in response.json()
    assert runtime.prepared == []


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_escape_label_values(runtime):
    slots = SimpleNamespace(slot_use=lambda: SimpleNamespace(busy=1, waiting=2))
    runtime.models['a"b\\c\nd'] = SimpleNamespace(engine=slots)
    text = client(runtime).get("/metrics").text
    assert 'agentport_sequences_busy{model="a\\"b\\\\c\\nd"} 1.0' in text
    assert 'agentport_requests_waiting{model="a\\"b\\\\c\\nd"} 2.0' in text


def test_reading_stops_once_the_body_passes_the_limit():
    pulled = []

    async def receive() -> dict:
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    app = SimpleNamespace(state=SimpleNamespace(settings=Settings(max_body_bytes=4096)))
    request = Request({"type": "http", "headers": [], "app": app}, receive)
    with pytest.raises(RequestTooLargeError):
        asyncio.run(read_body(request))
    assert len(pulled) == 5
