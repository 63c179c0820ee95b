"""Every scenario is a subcommand of `agentport bench`: each one's help answers, and options
that are wrong are refused before any server starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentport.cli.main import app

COMMANDS = (
    "engine",
    "serve",
    "compare",
    "decode",
    "concurrency",
    "agent-loop",
    "tool-calls",
    "claude-shape",
    "report",
    "run",
    "llama-server",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_scenario_has_a_subcommand(command: str):
    done = CliRunner().invoke(app, ["bench", command, "--help"])
    assert done.exit_code == 0, done.output
    assert "Usage" in done.output


@pytest.mark.parametrize(
    "args",
    [
        ["concurrency", "--streams", "0,2"],
        ["concurrency", "--streams", "x"],
        ["agent-loop", "--turns", "0"],
        ["agent-loop", "--side", "vllm"],
        ["agent-loop", "--agentport-env", "PATH=/x"],
        ["tool-calls", "--dialect", "grpc"],
        ["tool-calls", "--url", "http://example.com:80"],
    ],
)
def test_bad_options_are_refused(args: list[str], tmp_path):
    done = CliRunner().invoke(app, ["bench", *args, "--out", str(tmp_path)])
    assert done.exit_code == 1, done.output
