"""Console output of the command line: the stdout and stderr consoles and one-line errors.

Every failure a command reports goes through `fail` (or `reporting`, which turns any
`AgentportError` into it): one red line on stderr, exit code 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from agentport.config import Settings, env_name
from agentport.errors import AgentportError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One line on stderr, never wrapped."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Report `message` on stderr and end the command with exit code 1."""
    print_error(message)
    raise typer.Exit(code=1)


@contextmanager
def reporting() -> Iterator[None]:
    """Turn any `AgentportError` raised inside into a one-line error and exit code 1."""
    try:
        yield
    except AgentportError as exc:
        fail(exc.message)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `overrides`; an invalid value ends the command."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        fail(f"invalid setting {env_name(field)}: {error['msg']}")
