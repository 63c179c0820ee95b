"""`agentport launch claude`: run Claude Code against the agentport server.

Makes sure a server answers at the configured address (starting `agentport serve` in the
background if none does), builds the environment that points Claude Code at it
(`claude_environment`, pure) and replaces this process with `claude`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from agentport.config import Settings, make_private_dir, private_opener, process_environment
from agentport.errors import LaunchError

DEFAULT_TOKEN = "agentport"
PROBE_TIMEOUT = 1.0
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.25
INSTALL_HINT = "claude not found; install it with: npm install -g @anthropic-ai/claude-code"
MODEL_VARIABLES = (
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "CLAUDE_CODE_SUBAGENT_MODEL",
)


def claude_environment(settings: Settings, model: str | None = None) -> dict[str, str]:
    """The variables that point Claude Code at the server, every role on `model`."""
    model = model or settings.default_model
    env = {
        "ANTHROPIC_BASE_URL": settings.base_url,
        "ANTHROPIC_AUTH_TOKEN": settings.api_key or DEFAULT_TOKEN,
        "ANTHROPIC_API_KEY": "",
    }
    env.update(dict.fromkeys(MODEL_VARIABLES, model))
    env["CLAUDE_CODE_ATTRIBUTION_HEADER"] = "0"
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    return env


def export_lines(env: dict[str, str]) -> list[str]:
    """`export NAME='value'` lines, shell-quoted, for `--print-env`."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def probe(base_url: str, timeout: float = PROBE_TIMEOUT) -> int | None:
    """The status of `HEAD /` at `base_url`, or None if nothing answers."""
    try:
        return httpx.head(base_url + "/", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def server_log(settings: Settings) -> Path:
    return settings.home / "logs" / "server.log"


def serve_command(model: str | None = None) -> list[str]:
    """The command line of a background `agentport serve`."""
    command = [sys.executable, "-m", "agentport", "serve"]
    return [*command, "--model", model] if model else command


def start_server(settings: Settings, model: str | None = None) -> subprocess.Popen:
    """Start `agentport serve` detached from this process, its output appended to the log."""
    log_path = server_log(settings)
    make_private_dir(log_path.parent)
    with open(log_path, "ab", opener=private_opener) as log:
        return subprocess.Popen(
            serve_command(model),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_server(
    settings: Settings, process: subprocess.Popen, timeout: float = START_TIMEOUT
) -> None:
    """Wait until `HEAD /` answers 200; raise `LaunchError` if the server exits or is late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe(settings.base_url) == 200:
            return
        if process.poll() is not None:
            raise LaunchError(
                f"agentport server exited with code {process.returncode}; "
                f"see {server_log(settings)}"
            )
        time.sleep(POLL_INTERVAL)
    raise LaunchError(
        f"agentport server did not answer at {settings.base_url} within {timeout:.0f} s; "
        f"see {server_log(settings)}"
    )


def ensure_server(
    settings: Settings, model: str | None = None, notify: Callable[[str], None] = print
) -> bool:
    """Start a server unless one answers already; True if one was started."""
    if probe(settings.base_url) is not None:
        return False
    notify(f"Starting agentport server at {settings.base_url} (log: {server_log(settings)})")
    wait_for_server(settings, start_server(settings, model))
    return True


def find_claude() -> str:
    """The path of the `claude` program; `LaunchError` with the install hint if missing."""
    path = shutil.which("claude")
    if path is None:
        raise LaunchError(INSTALL_HINT)
    return path


def exec_claude(path: str, env: dict[str, str], args: list[str]) -> None:
    """Replace this process with `claude args...`, its environment updated by `env`."""
    child_env = process_environment()
    child_env.update(env)
    os.execvpe(path, [path, *args], child_env)


def launch_claude(
    settings: Settings,
    model: str | None = None,
    args: list[str] | None = None,
    notify: Callable[[str], None] = print,
) -> None:
    """Find `claude`, make sure a server answers, then become `claude` pointed at it."""
    path = find_claude()
    ensure_server(settings, model, notify)
    exec_claude(path, claude_environment(settings, model), list(args or []))
