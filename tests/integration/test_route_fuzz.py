"""A property-based fuzz of every route in the server's route table, against a live server on the
real engine: Hypothesis sends random JSON, mutated valid bodies and raw bytes. No answer is a
5xx (beyond push's 501 and a pull's 502 when the registry cannot be reached), and every error
is in its dialect's own shape.

Bounded: a fixed, derandomized number of examples per route; the server has a small context
and a short default answer; pulls go to a closed port on loopback, so nothing leaves the host.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentport.server.errors import dialect_of
from agentport.server.routes import ROUTES
from live_server import LiveServer, free_port, start_server, stop_server

MODEL = "smollm2:135m"
USER = [{"role": "user", "content": "Say hi."}]
TOOL = {"name": "read", "description": "Read a file", "input_schema": {"type": "object"}}
FUNCTION = {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}
SEEDS: dict[str, list[dict[str, Any]]] = {
    "/v1/messages": [
        {"model": MODEL, "max_tokens": 8, "messages": USER},
        {"model": MODEL, "max_tokens": 8, "messages": USER, "tools": [TOOL], "stream": True},
    ],
    "/v1/messages/count_tokens": [{"model": MODEL, "messages": USER, "tools": [TOOL]}],
    "/v1/chat/completions": [
        {"model": MODEL, "max_tokens": 8, "messages": USER},
        {"model": MODEL, "max_tokens": 8, "messages": USER, "tools": [FUNCTION], "stream": True},
    ],
    "/v1/completions": [{"model": MODEL, "max_tokens": 8, "prompt": "Once upon"}],
    "/v1/responses": [{"model": MODEL, "max_output_tokens": 8, "input": "hi", "stream": True}],
    "/v1/responses/input_tokens": [{"model": MODEL, "input": "hi"}],
    "/v1/embeddings": [{"model": MODEL, "input": ["a", "b"]}],
    "/api/chat": [{"model": MODEL, "messages": USER, "options": {"num_predict": 8}}],
    "/api/generate": [{"model": MODEL, "prompt": "hi", "options": {"num_predict": 8}}],
    "/api/embed": [{"model": MODEL, "input": "hi"}],
    "/api/embeddings": [{"model": MODEL, "prompt": "hi"}],
    "/api/show": [{"model": MODEL}],
    "/api/copy": [{"source": MODEL, "destination": "fuzz-copy"}],
    "/api/delete": [{"model": "fuzz-copy"}],
    "/api/create": [{"model": "fuzz-made", "from": MODEL, "system": "Be brief.", "stream": False}],
    "/api/pull": [{"model": "library/nothing:here", "stream": False}],
    "/api/push": [{"model": "fuzz-made"}],
}
ALLOWED_5XX = {"/api/push": {501}, "/api/pull": {502}}
OVERLOADED = {503, 529}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: pulls fail at once
    env = {
        "AGENTPORT_CONTEXT_LENGTH": "1024",
        "AGENTPORT_DEFAULT_MAX_TOKENS": "16",
        "AGENTPORT_REGISTRY": closed,
        "AGENTPORT_HF_ENDPOINT": closed,
        "AGENTPORT_PREFIX_CACHE_DISK": "0",
    }
    live = start_server(tmp_path_factory.mktemp("fuzz-home"), env)
    yield live
    stop_server(live)


def _mutated(draw: st.DrawFn, seed: dict[str, Any]) -> Any:
    body = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(body)
        action = draw(st.sampled_from(("replace", "delete", "add", "nest")))
        if action == "replace" and keys:
            body[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "delete" and keys:
            body.pop(draw(st.sampled_from(keys)))
        elif action == "add":
            body[draw(st.text(max_size=12))] = draw(json_values)
        elif keys:
            key = draw(st.sampled_from(keys))
            if isinstance(body[key], list) and body[key]:
                body[key][0] = draw(json_values)
            elif isinstance(body[key], dict) and body[key]:
                body[key][draw(st.sampled_from(sorted(body[key])))] = draw(json_values)
    return body


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    seeds = SEEDS.get(path, [])
    kinds = ("mutated", "mutated", "random", "bytes") if seeds else ("random", "bytes")
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    value = _mutated(draw, draw(st.sampled_from(seeds))) if kind == "mutated" else draw(json_values)
    return json.dumps(value).encode()


def _concrete(path: str, draw: st.DrawFn) -> str:
    if "{model_id:path}" in path:
        return path.replace("{model_id:path}", draw(st.sampled_from((MODEL, "no-such", "a/b/c"))))
    if "{digest:path}" in path:
        digest = draw(st.sampled_from(("sha256:" + "0" * 64, "sha256:xyz", "..%2f..", "")))
        return path.replace("{digest:path}", digest)
    return path


def _assert_dialect_error(path: str, response: httpx.Response) -> None:
    body = response.json()
    dialect = dialect_of(path)
    if dialect == "ollama":
        assert isinstance(body.get("error"), str) and body["error"], body
    elif dialect == "openai":
        assert isinstance(body["error"]["message"], str) and "type" in body["error"], body
    else:
        assert body["type"] == "error", body
        assert isinstance(body["error"]["type"], str), body
        assert isinstance(body["error"]["message"], str), body


def _check(path: str, template: str, response: httpx.Response) -> None:
    status = response.status_code
    if status in OVERLOADED:
        assert response.headers.get("retry-after"), response.headers
    else:
        assert status < 500 or status in ALLOWED_5XX.get(template, ()), (status, response.text)
    if status >= 400 and template != "/metrics" and response.request.method != "HEAD":
        _assert_dialect_error(path, response)


CASES = [(route.path, method) for route in ROUTES for method in route.methods]
FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize(("template", "method"), CASES, ids=[f"{m} {p}" for p, m in CASES])
@FUZZ
@given(data=st.data())
def test_no_route_answers_5xx_or_an_error_outside_its_dialect(
    fuzz_server: LiveServer, template: str, method: str, data: st.DataObject
) -> None:
    path = _concrete(template, data.draw)
    with httpx.Client(base_url=fuzz_server.url, timeout=120) as client:
        if method in ("GET", "HEAD"):
            response = client.request(method, path)
        else:
            content = data.draw(bodies(template))
            headers = {"content-type": "application/json"}
            response = client.request(method, path, content=content, headers=headers)
    _check(path, template, response)


def test_the_fuzzed_server_logged_no_traceback(fuzz_server: LiveServer) -> None:
    assert "Traceback" not in Path(fuzz_server.log).read_text(errors="replace")
