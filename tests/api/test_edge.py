"""The HTTP edge without an engine: auth, host and origin checks, body limits, unknown routes,
and each dialect's error shape and status."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agentport.config import Settings
from agentport.errors import (
    AuthenticationError,
    InternalError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    PromptTooLongError,
    RateLimitedError,
    RequestTooLargeError,
)
from agentport.server.app import create_app
from agentport.server.errors import error_response


def client(**settings) -> TestClient:
    app = create_app(Settings(**settings))
    return TestClient(app, base_url="http://127.0.0.1:11434", raise_server_exceptions=False)


def test_api_key_is_required_when_set():
    api = client(api_key="sekret")
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    refused = api.post("/v1/messages", json=body)
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert api.head("/").status_code == 200  # the connectivity check stays open
    wrong = api.get("/api/tags", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid or missing API key"}


@pytest.mark.parametrize(
    "headers",
    [{"host": "attacker.example"}, {"origin": "https://evil.example"}],
)
def test_foreign_host_or_origin_is_forbidden(headers):
    response = client().post("/v1/messages", json={}, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_loopback_origins_and_configured_ones_pass_the_guard():
    api = client(allowed_origins="https://app.example")
    for origin in ("http://localhost:3000", "http://127.0.0.1", "https://app.example"):
        assert api.get("/", headers={"origin": origin}).status_code == 200


def test_oversized_body_is_413():
    response = client(max_body_bytes=100).post("/v1/messages", content=b"{" + b" " * 200 + b"}")
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(
    "path,shape",
    [("/v1/nothing", "openai"), ("/api/nothing", "ollama"), ("/v1/messages/x", "anthropic")],
)
def test_unknown_routes_are_404_in_the_dialect(path, shape):
    response = client().post(path, json={})
    assert response.status_code == 404
    body = response.json()
    if shape == "ollama":
        assert isinstance(body["error"], str)
    elif shape == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_telemetry_is_accepted_quietly():
    assert client().post("/api/event_logging/batch", json={"events": []}).status_code < 300


@pytest.mark.parametrize(
    "error,status,kind",
    [
        (PromptTooLongError(9, 8), 400, "invalid_request_error"),
        (AuthenticationError("x"), 401, "authentication_error"),
        (PermissionDeniedError("x"), 403, "permission_error"),
        (NotFoundError("x"), 404, "not_found_error"),
        (RequestTooLargeError("x"), 413, "request_too_large"),
        (RateLimitedError("x"), 429, "rate_limit_error"),
        (InternalError("x"), 500, "api_error"),
        (OverloadedError("x", retry_after=3), 529, "overloaded_error"),
    ],
)
def test_anthropic_statuses(error, status, kind):
    response = error_response(error, "anthropic")
    assert response.status_code == status
    assert kind in response.body.decode()
    if isinstance(error, OverloadedError):
        assert response.headers["retry-after"] == "3"
        assert error_response(error, "openai").status_code == 503
        assert error_response(error, "ollama").status_code == 503


def test_deeply_nested_body_is_400_not_500():
    response = client().post("/v1/messages", content=b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
