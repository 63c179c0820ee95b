"""End-to-end set-up: the Claude Code CLI and the Codex CLI, each installed from npm once,
into its own prefix under .cache so the two packages never disturb each other."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.328"
CODEX = "@openai/codex@0.169.0"
ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = ROOT / ".cache" / "npm"
CODEX_PREFIX = ROOT / ".cache" / "npm-codex"


def npm_binary(package: str, prefix: Path, name: str) -> Path:
    """The `name` executable of `package`, installed into `prefix` on first use."""
    binary = prefix / "node_modules" / ".bin" / name
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm, f"npm is needed to install {package} for the end-to-end tests"
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), package],
            check=True,
            timeout=600,
        )
    assert binary.exists()
    return binary


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    return npm_binary(CLAUDE_CODE, NPM_PREFIX, "claude")


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    return npm_binary(CODEX, CODEX_PREFIX, "codex")
