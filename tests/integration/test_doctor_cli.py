"""`agentport doctor` against the real server with the embedded model, and with no server
answering: the server's checks come from its API, the machine's are still made."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from agentport.cli.doctor import FAIL, OK, SERVE_FIX, TOOLS_FIX, WARN
from agentport.cli.main import app
from live_server import free_port

runner = CliRunner()
NAMES = ["server", "model", "context", "tools", "memory", "swap", "pressure", "disk"]


def doctor(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def checks(data: dict) -> dict[str, dict]:
    return {check["name"]: check for check in data["checks"]}


def assert_well_formed(code: int, data: dict) -> None:
    assert [check["name"] for check in data["checks"]] == NAMES
    for check in data["checks"]:
        assert check["status"] in (OK, WARN, FAIL) and check["finding"]
        assert bool(check["fix"]) is (check["status"] != OK), check
    failed = any(check["status"] == FAIL for check in data["checks"])
    assert code == (1 if failed else 0) and data["ok"] is not failed


@pytest.fixture
def on_server(server, monkeypatch: pytest.MonkeyPatch):
    """The doctor pointed at the session's server and its store."""
    monkeypatch.setenv("AGENTPORT_HOST", server.url.removeprefix("http://"))
    monkeypatch.setenv("AGENTPORT_HOME", str(server.home))
    return server


def test_doctor_on_the_live_server(on_server, api) -> None:
    code, data = doctor()
    assert_well_formed(code, data)
    found = checks(data)
    assert data["model"] == "smollm2:135m"
    assert found["server"]["status"] == OK and on_server.url in found["server"]["finding"]
    assert found["model"]["status"] == OK
    loaded = next(m for m in api.get("/api/ps").json()["models"] if m["name"] == "smollm2:135m")
    assert f"{loaded['context_length']} tokens (loaded)" in found["context"]["finding"]
    # SmolLM2's chat template has no tools: agentport's fallback prompt is used, and said so.
    assert (found["tools"]["status"], found["tools"]["fix"]) == (WARN, TOOLS_FIX)
    assert "free in" in found["disk"]["finding"]


def test_doctor_names_a_missing_model(on_server) -> None:
    code, data = doctor("--model", "nosuch:1b")
    assert_well_formed(code, data)
    found = checks(data)
    assert code == 1
    assert (found["model"]["status"], found["model"]["fix"]) == (FAIL, "agentport pull nosuch:1b")
    assert found["tools"]["fix"] == "agentport pull nosuch:1b"


def test_doctor_prints_a_table(on_server) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTPORT_")}
    env.update(
        AGENTPORT_HOST=on_server.url.removeprefix("http://"),
        AGENTPORT_HOME=str(on_server.home),
        COLUMNS="400",  # one line per check
    )
    result = subprocess.run(
        [sys.executable, "-m", "agentport", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "STATUS" in result.stdout and "FIX" in result.stdout, result.stderr
    assert "smollm2:135m" in result.stdout and TOOLS_FIX in result.stdout
    assert result.returncode in (0, 1)


def test_doctor_with_no_server_still_checks_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{free_port()}")
    code, data = doctor()
    assert_well_formed(code, data)
    found = checks(data)
    assert code == 1
    assert (found["server"]["status"], found["server"]["fix"]) == (FAIL, SERVE_FIX)
    assert found["model"]["status"] == OK  # the embedded model, found in the local store
    assert "local store" in found["model"]["finding"]
    assert (found["tools"]["status"], found["tools"]["fix"]) == (WARN, SERVE_FIX)
    assert "free in" in found["disk"]["finding"]
