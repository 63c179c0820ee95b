"""Tests of the command line: pure formatting and SSE parsing, and every command run through
typer's CliRunner against a tiny real HTTP server that answers with canned JSON and SSE."""

from __future__ import annotations

import io
import json
import runpy
import socket
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from agentport import __version__
from agentport.cli import chat as chat_module
from agentport.cli.chat import ChatOptions, iter_sse, message_request
from agentport.cli.client import error_message
from agentport.cli.format import (
    context_text,
    human_bytes,
    human_duration,
    human_time,
    parse_time,
    short_id,
)
from agentport.cli.main import app, field_help
from agentport.config import Settings
from agentport.errors import ApiError

runner = CliRunner()
DIGEST = "sha256:" + "0123456789abcdef" * 4


# --- a tiny real server ---------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CannedServer:
    """Routes (method, path) to canned answers and records every request."""

    url: str = ""
    routes: dict[tuple[str, str], tuple[int, str, bytes]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def json(self, method: str, path: str, data: Any, status: int = 200) -> None:
        self.routes[(method, path)] = (status, "application/json", json.dumps(data).encode())

    def sse(self, path: str, events: list[dict[str, Any]], status: int = 200) -> None:
        frames = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        self.routes[("POST", path)] = (status, "text/event-stream", frames.encode())

    def posted(self) -> list[Any]:
        return [r.json() for r in self.requests if r.method == "POST"]


class _Handler(BaseHTTPRequestHandler):
    canned: CannedServer

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.canned.requests.append(Recorded(self.command, self.path, headers, body))
        missing = (404, "application/json", b'{"error": "not found"}')
        status, kind, payload = self.canned.routes.get((self.command, self.path), missing)
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich reads COLUMNS: tables are not wrapped in the tests."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[CannedServer]:
    canned = CannedServer()
    canned.routes[("HEAD", "/")] = (200, "text/plain", b"")
    handler = type("Handler", (_Handler,), {"canned": canned})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    port = server.server_address[1]
    canned.url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{port}")
    yield canned
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at a port where nothing listens; returns its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{port}")
    return f"http://127.0.0.1:{port}"


def iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat().replace("+00:00", "Z")


def text_stream(*parts: str, thinking: str = "", tool: str = "") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {"content": []}}]
    index = 0
    if thinking:
        events.append(_block(index, {"type": "thinking", "thinking": ""}))
        events.append(_delta(index, {"type": "thinking_delta", "thinking": thinking}))
        index += 1
    events.append(_block(index, {"type": "text", "text": ""}))
    events.extend(_delta(index, {"type": "text_delta", "text": part}) for part in parts)
    if tool:
        events.append(
            _block(index + 1, {"type": "tool_use", "id": "t1", "name": tool, "input": {}})
        )
    events.append({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
    events.append({"type": "message_stop"})
    return events


def _block(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def error_event(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


# --- pure functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (98_000_000, "98 MB"),
        (101_234_567, "101 MB"),
        (4_700_000_000, "4.7 GB"),
        (2_000_000_000_000, "2 TB"),
    ],
)
def test_human_bytes(size: int | None, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(milliseconds=300), "less than a second"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(seconds=42), "42 seconds"),
        (timedelta(seconds=61), "about a minute"),
        (timedelta(minutes=5, seconds=10), "5 minutes"),
        (timedelta(minutes=65), "about an hour"),
        (timedelta(hours=30), "30 hours"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=21), "3 weeks"),
        (timedelta(days=90), "3 months"),
        (timedelta(days=800), "2 years"),
    ],
)
def test_human_duration(delta: timedelta, text: str) -> None:
    assert human_duration(delta) == text


NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2025-06-01T11:55:00Z", "5 minutes ago"),
        ("2025-06-01T12:29:30.123456789Z", "29 minutes from now"),
        ("2025-06-01T14:00:00+02:00", "less than a second ago"),
        ("2025-06-01T11:00:00", "about an hour ago"),
        ("2300-01-01T00:00:00Z", "forever"),
        (None, "forever"),
        ("not a time", "forever"),
    ],
)
def test_human_time(value: str | None, text: str) -> None:
    assert human_time(value, now=NOW) == text


def test_parse_time_accepts_nanoseconds_and_zulu() -> None:
    moment = parse_time("2024-05-01T12:34:56.123456789-07:00")
    assert moment == datetime(2024, 5, 1, 19, 34, 56, 123456, tzinfo=timezone.utc)
    assert parse_time("2024-05-01T12:34:56Z") == datetime(
        2024, 5, 1, 12, 34, 56, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    ("digest", "text"),
    [(DIGEST, "0123456789ab"), ("abcdef0123456789ff", "abcdef012345"), (None, "-"), ("", "-")],
)
def test_short_id(digest: str | None, text: str) -> None:
    assert short_id(digest) == text


@pytest.mark.parametrize(
    ("model", "text"),
    [
        (
            {"context_length": 32768, "rope_scaling": "yarn x4.0 from 8192"},
            "32768 (yarn x4.0 from 8192)",
        ),
        ({"context_length": 8192, "rope_scaling": None}, "8192"),
        ({}, "-"),
    ],
)
def test_context_text(model: dict[str, Any], text: str) -> None:
    assert context_text(model) == text


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            404,
            '{"type":"error","error":{"type":"not_found_error","message":"no such model"}}',
            "no such model",
        ),
        (400, '{"error":{"message":"bad","type":"invalid_request_error"}}', "bad"),
        (500, '{"error":"engine failed"}', "engine failed"),
        (502, "Bad Gateway", "the server answered 502: Bad Gateway"),
        (500, "", "the server answered 500: no details"),
    ],
)
def test_error_message(status: int, body: str, message: str) -> None:
    assert error_message(status, body) == message


def test_iter_sse_parses_events_and_falls_back_to_data_type() -> None:
    lines = [
        "event: message_start",
        'data: {"type": "message_start"}',
        "",
        ": a comment",
        'data: {"type": "ping"}',
        "",
        "event: content_block_delta",
        'data: {"type": "content_block_delta",',
        'data:  "delta": {"type": "text_delta", "text": "hi"}}',
    ]
    events = list(iter_sse(lines))
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_delta"]
    assert events[2][1]["delta"]["text"] == "hi"


def test_iter_sse_rejects_unreadable_data() -> None:
    with pytest.raises(ApiError, match="unreadable event"):
        list(iter_sse(["data: {not json", ""]))


def test_message_request_carries_only_the_options_given() -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert message_request("m", messages, ChatOptions()) == {
        "model": "m",
        "max_tokens": 2048,
        "stream": True,
        "messages": messages,
    }
    body = message_request("m", messages, ChatOptions("be brief", 0.0, 64))
    assert (body["system"], body["temperature"], body["max_tokens"]) == ("be brief", 0.0, 64)


# --- commands ---------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "run", "list", "ps", "config", "version", "launch"):
        assert command in result.output


def test_serve_option_help_comes_from_settings() -> None:
    serve = typer.main.get_command(app).commands["serve"]
    helps = {param.name: param.help for param in serve.params}
    assert helps == {
        "host": field_help("host"),
        "model": field_help("default_model"),
        "ctx": field_help("context_length"),
        "threads": field_help("threads"),
        "engine": field_help("engine"),
        "insecure": field_help("insecure"),
    }
    assert helps["host"] == Settings.model_fields["host"].description


@pytest.fixture
def fake_server_module(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    started: list[Settings] = []
    module = types.ModuleType("agentport.server.app")
    module.run_server = started.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agentport.server.app", module)
    return started


def test_serve_passes_only_the_options_given(fake_server_module: list[Settings]) -> None:
    result = runner.invoke(app, ["serve", "--host", ":9999", "--ctx", "4096", "--model", "m:1"])
    assert result.exit_code == 0, result.output
    (settings,) = fake_server_module
    assert settings.bind == ("127.0.0.1", 9999)
    assert (settings.context_length, settings.default_model) == (4096, "m:1")
    given = settings.model_fields_set - {"home"}  # the test's own home comes from the env
    assert given == {"host", "context_length", "default_model"}


def test_serve_rejects_an_invalid_setting(fake_server_module: list[Settings]) -> None:
    result = runner.invoke(app, ["serve", "--ctx", "100"])
    assert result.exit_code == 1
    assert "invalid setting AGENTPORT_CONTEXT_LENGTH" in result.stderr
    assert fake_server_module == []


def test_list_prints_the_models(api: CannedServer) -> None:
    model = {
        "name": "smollm2:135m",
        "model": "smollm2:135m",
        "modified_at": iso(-timedelta(minutes=5, seconds=3)),
        "size": 98_000_000,
        "digest": DIGEST,
        "details": {"family": "llama", "parameter_size": "135M", "quantization_level": "Q4_1"},
    }
    api.json("GET", "/api/tags", {"models": [model]})
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    header, row = [line.split() for line in result.output.splitlines() if line.strip()][:3:2]
    assert header == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row == ["smollm2:135m", "0123456789ab", "98", "MB", "5", "minutes", "ago"]


def test_list_with_no_models_prints_the_header(api: CannedServer) -> None:
    api.json("GET", "/api/tags", {"models": []})
    result = runner.invoke(app, ["ls"])
    assert result.exit_code == 0
    assert "NAME" in result.output


def test_ps_prints_the_loaded_models(api: CannedServer) -> None:
    loaded = {
        "name": "qwen3:8b",
        "model": "qwen3:8b",
        "size": 5_200_000_000,
        "digest": DIGEST,
        "expires_at": iso(timedelta(minutes=29, seconds=30)),
        "context_length": 32768,
        "rope_scaling": "yarn x4.0 from 8192",
        "details": {},
    }
    pinned = dict(loaded, name="smollm2:135m", expires_at=None, rope_scaling=None)
    api.json("GET", "/api/ps", {"models": [loaded, pinned]})
    result = runner.invoke(app, ["ps"])
    assert result.exit_code == 0, result.output
    assert "CONTEXT" in result.output and "UNTIL" in result.output
    assert "32768 (yarn x4.0 from 8192)" in result.output
    assert "29 minutes from now" in result.output
    assert "forever" in result.output
    assert "5.2 GB" in result.output


@pytest.mark.parametrize("command", [["list"], ["ps"], ["run", "m", "hi"], ["run", "m"]])
def test_commands_report_a_missing_server(no_server: str, command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    expected = f"agentport server is not running at {no_server}; start it with `agentport serve`"
    assert result.stderr.strip().splitlines() == [f"error: {expected}"]


def test_config_shows_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPORT_THREADS", "4")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    for name in Settings.model_fields:
        assert f"AGENTPORT_{name.upper()}" in result.output
    threads = next(line for line in result.output.splitlines() if "AGENTPORT_THREADS" in line)
    assert threads.split()[1:3] == ["4", "environment"]


def test_version_without_a_server(no_server: str) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"agentport {__version__}"


def test_version_with_a_server(api: CannedServer) -> None:
    api.json("GET", "/api/version", {"version": "9.9.9"})
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"agentport {__version__}", f"server 9.9.9 at {api.url}"]


def test_run_streams_a_one_shot_answer(api: CannedServer) -> None:
    api.sse("/v1/messages", text_stream("Hello", ", world", thinking="hmm", tool="Bash"))
    result = runner.invoke(app, ["run", "smollm2:135m", "Say hello"])
    assert result.exit_code == 0, result.output
    assert "hmm" in result.output
    assert "Hello, world" in result.output
    assert "tool_use: Bash" in result.output
    request = next(r for r in api.requests if r.method == "POST")
    assert request.path == "/v1/messages"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.json() == {
        "model": "smollm2:135m",
        "max_tokens": 2048,
        "stream": True,
        "messages": [{"role": "user", "content": "Say hello"}],
    }


def test_run_sends_the_options(api: CannedServer) -> None:
    api.sse("/v1/messages", text_stream("ok"))
    args = ["run", "m", "hi", "--system", "be brief", "--temperature", "0.2", "--max-tokens", "9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (body,) = api.posted()
    assert (body["system"], body["temperature"], body["max_tokens"]) == ("be brief", 0.2, 9)


def test_run_reads_the_prompt_from_stdin(api: CannedServer) -> None:
    api.sse("/v1/messages", text_stream("ok"))
    result = runner.invoke(app, ["run", "m", "-"], input="a long\nprompt\n")
    assert result.exit_code == 0, result.output
    assert api.posted()[0]["messages"] == [{"role": "user", "content": "a long\nprompt\n"}]


def test_run_reports_an_error_event(api: CannedServer) -> None:
    events = text_stream("partial")[:3] + [error_event("overloaded_error", "Overloaded")]
    api.sse("/v1/messages", events)
    result = runner.invoke(app, ["run", "m", "hi"])
    assert result.exit_code == 1
    assert "partial" in result.stdout
    assert result.stderr.strip() == "error: Overloaded"


def test_run_reports_an_error_status(api: CannedServer) -> None:
    body = {"type": "error", "error": {"type": "not_found_error", "message": "model 'x' not found"}}
    api.json("POST", "/v1/messages", body, status=404)
    result = runner.invoke(app, ["run", "x", "hi"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: model 'x' not found"


def test_chat_keeps_the_conversation(api: CannedServer) -> None:
    api.sse("/v1/messages", text_stream("Hi there"))
    result = runner.invoke(app, ["run", "m"], input="hello\n\nhow are you?\n/bye\n")
    assert result.exit_code == 0, result.output
    first, second = api.posted()
    assert first["messages"] == [{"role": "user", "content": "hello"}]
    assert second["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "how are you?"},
    ]
    assert result.output.count("Hi there") == 2


def test_chat_ends_at_end_of_input_and_clears(api: CannedServer) -> None:
    api.sse("/v1/messages", text_stream("Hi"))
    result = runner.invoke(app, ["run", "m"], input="one\n/clear\ntwo\n")
    assert result.exit_code == 0, result.output
    assert api.posted()[1]["messages"] == [{"role": "user", "content": "two"}]


def test_chat_survives_an_error_and_forgets_the_failed_turn(api: CannedServer) -> None:
    api.sse("/v1/messages", [error_event("api_error", "engine failed")])
    result = runner.invoke(app, ["run", "m"], input="one\ntwo\n")
    assert result.exit_code == 0
    assert result.stderr.count("error: engine failed") == 2
    assert api.posted()[1]["messages"] == [{"role": "user", "content": "two"}]


def test_stream_printer_keeps_only_text() -> None:
    console = Console(file=io.StringIO(), width=80)
    printer = chat_module.StreamPrinter(console)
    for event in text_stream("a", "b", thinking="think", tool="Read"):
        printer.handle(event["type"], event)
    printer.finish()
    assert printer.text == "ab"
    assert printer.stop_reason == "end_turn"


def test_python_dash_m_runs_the_app(monkeypatch: pytest.MonkeyPatch, no_server: str) -> None:
    monkeypatch.setattr(sys, "argv", ["agentport", "version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("agentport", run_name="__main__")
    assert exit_info.value.code == 0


def test_serve_refuses_an_open_address_without_a_key(
    fake_server_module: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTPORT_API_KEY", raising=False)
    monkeypatch.delenv("AGENTPORT_INSECURE", raising=False)
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0:11434"])
    assert result.exit_code == 1
    assert "without an API key" in result.output and "--insecure" in result.output
    assert fake_server_module == []
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0:11434", "--insecure"])
    assert result.exit_code == 0
    assert [settings.insecure for settings in fake_server_module] == [True]
