"""Tests of `agentport launch claude`: the environment (a pure function), `--print-env`, the
missing-`claude` message, the exec of `claude`, and starting a background server when none
answers (the process start is faked; the probes run against a tiny real HTTP server)."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentport.cli.main import app
from agentport.config import Settings
from agentport.errors import LaunchError
from agentport.launch import claude
from agentport.launch.claude import claude_environment, export_lines

runner = CliRunner()
MODEL_VARIABLES = [
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "CLAUDE_CODE_SUBAGENT_MODEL",
]


class _Ok(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AGENTPORT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTPORT_API_KEY", raising=False)
    monkeypatch.delenv("AGENTPORT_DEFAULT_MODEL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP server answering `HEAD /` with 200; AGENTPORT_HOST points at it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    port = httpd.server_address[1]
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{port}")
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to start a process."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"nothing should be started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


class FakeProcess:
    """Stands in for the background `agentport serve` process."""

    def __init__(self, command: list[str], returncode: int | None = None, **kwargs: Any) -> None:
        self.command = command
        self.kwargs = kwargs
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


# --- the environment ----------------------------------------------------------------------------


def test_claude_environment_points_every_role_at_the_model() -> None:
    env = claude_environment(Settings(host="127.0.0.1:12345"), "qwen3:8b")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:12345"
    assert env["ANTHROPIC_AUTH_TOKEN"] == "agentport"
    assert env["ANTHROPIC_API_KEY"] == ""
    assert {name: env[name] for name in MODEL_VARIABLES} == dict.fromkeys(
        MODEL_VARIABLES, "qwen3:8b"
    )
    assert env["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert len(env) == 10


def test_claude_environment_defaults_and_api_key() -> None:
    settings = Settings(host="0.0.0.0:8080", default_model="smol:1", api_key="s3cret")
    env = claude_environment(settings)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"
    assert env["ANTHROPIC_AUTH_TOKEN"] == "s3cret"
    assert env["ANTHROPIC_MODEL"] == "smol:1"


def test_export_lines_are_shell_quoted() -> None:
    env = {"A": "plain", "B": "", "C": "it's a $HOME"}
    lines = export_lines(env)
    assert lines[0] == "export A=plain"
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert parsed == env


def test_print_env(monkeypatch: pytest.MonkeyPatch, no_server: str, no_start: None) -> None:
    monkeypatch.setattr(claude, "probe", lambda *a, **k: pytest.fail("no probe expected"))
    result = runner.invoke(app, ["launch", "claude", "--model", "my model", "--print-env"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"export ANTHROPIC_BASE_URL={no_server}" in lines
    assert "export ANTHROPIC_API_KEY=''" in lines
    assert "export ANTHROPIC_MODEL='my model'" in lines
    assert len(lines) == 10


# --- launching ----------------------------------------------------------------------------------


def test_missing_claude(monkeypatch: pytest.MonkeyPatch, no_server: str, no_start: None) -> None:
    monkeypatch.setattr(claude.shutil, "which", lambda name: None)
    result = runner.invoke(app, ["launch", "claude"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {claude.INSTALL_HINT}"]


def test_launch_execs_claude_with_the_environment(
    monkeypatch: pytest.MonkeyPatch, server: str, no_start: None, tmp_path: Path
) -> None:
    program = str(tmp_path / "claude")
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(claude.shutil, "which", lambda name: program)
    monkeypatch.setattr(claude.os, "execvpe", lambda *args: calls.append(args))
    monkeypatch.setenv("KEPT_VARIABLE", "kept")
    args = ["launch", "claude", "--model", "m:1", "--", "-p", "hi there", "--output-format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ((path, argv, env),) = calls
    assert path == program
    assert argv == [program, "-p", "hi there", "--output-format", "json"]
    assert env["ANTHROPIC_BASE_URL"] == server
    assert env["CLAUDE_CODE_SUBAGENT_MODEL"] == "m:1"
    assert env["KEPT_VARIABLE"] == "kept"


def test_probe_against_a_real_server(server: str, no_server: str) -> None:
    assert claude.probe(server) == 200
    assert claude.probe(no_server, timeout=0.5) is None


def test_ensure_server_leaves_a_running_server_alone(server: str, no_start: None) -> None:
    assert claude.ensure_server(Settings(), notify=pytest.fail) is False


def test_ensure_server_starts_one_in_the_background(
    monkeypatch: pytest.MonkeyPatch, no_server: str, isolated_home: Path
) -> None:
    started: list[FakeProcess] = []
    answers = iter([None, None, 404, 200])
    monkeypatch.setattr(claude, "probe", lambda *a, **k: next(answers))
    monkeypatch.setattr(claude.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(
        subprocess, "Popen", lambda cmd, **kw: started.append(FakeProcess(cmd, **kw)) or started[-1]
    )
    notes: list[str] = []
    assert claude.ensure_server(Settings(), model="m:1", notify=notes.append) is True
    (process,) = started
    assert process.command == [sys.executable, "-m", "agentport", "serve", "--model", "m:1"]
    assert process.kwargs["start_new_session"] is True
    assert process.kwargs["stdin"] == subprocess.DEVNULL
    assert process.kwargs["stderr"] == subprocess.STDOUT
    log = isolated_home / "logs" / "server.log"
    assert log.exists()
    assert process.kwargs["stdout"].name == str(log)
    assert notes and no_server in notes[0] and str(log) in notes[0]


def test_serve_command_without_a_model() -> None:
    assert claude.serve_command() == [sys.executable, "-m", "agentport", "serve"]


def test_wait_for_server_reports_an_exited_server(
    monkeypatch: pytest.MonkeyPatch, no_server: str, isolated_home: Path
) -> None:
    monkeypatch.setattr(claude.time, "sleep", lambda seconds: None)
    with pytest.raises(LaunchError, match="exited with code 3") as info:
        claude.wait_for_server(Settings(), FakeProcess([], returncode=3))
    assert str(isolated_home / "logs" / "server.log") in info.value.message


def test_wait_for_server_gives_up(monkeypatch: pytest.MonkeyPatch, no_server: str) -> None:
    with pytest.raises(LaunchError, match=f"did not answer at {no_server}"):
        claude.wait_for_server(Settings(), FakeProcess([]), timeout=0)
