"""End-to-end set-up: the Claude Code CLI, installed from npm into .cache/npm once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.328"
ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = ROOT / ".cache" / "npm"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    binary = NPM_PREFIX / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the Claude Code CLI for the end-to-end tests"
        NPM_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX), CLAUDE_CODE],
            check=True,
            timeout=600,
        )
    assert binary.exists()
    return binary
