"""`agentport pull NAME`: pull a model through the server's `POST /api/pull` and show its progress,
a rich bar per layer with size, speed and time left, and a line per status.

Ctrl-C closes the connection; the server then cancels the pull, keeping its partial downloads
(the next pull resumes them) and showing no model until one is complete.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from agentport.cli.client import Client, message_in
from agentport.cli.console import console, err_console, load_settings, reporting
from agentport.errors import ApiError

PULL_PATH = "/api/pull"
INTERRUPTED_EXIT_CODE = 130


def pull_command(
    name: Annotated[str, typer.Argument(help="The model: name[:tag] or hf.co/owner/repo[:quant].")],
) -> None:
    """Download a model from a registry (Ollama's, or Hugging Face GGUF repositories) into the
    store, with a progress bar per layer; Ctrl-C stops it, and pulling again resumes."""
    previous = signal.signal(signal.SIGINT, lambda *_: _interrupted(name))
    try:
        with reporting(), Client(load_settings()) as client:
            follow_pull(client, name, console)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(name: str) -> None:
    """Ctrl-C: say how to resume and leave at once. Unwinding could stop inside the HTTP
    client's connection-pool lock and hang; the closed socket tells the server to stop."""
    err_console.print(
        f"pull interrupted; run `agentport pull {name}` again to resume",
        markup=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT_CODE)


def follow_pull(client: Client, name: str, out: Console) -> None:
    """Stream the pull's progress events into a `PullView`; an error event raises `ApiError`."""
    view = PullView(out)
    try:
        with client.stream(PULL_PATH, {"model": name, "stream": True}, {}) as lines:
            for line in lines:
                if line.strip():
                    view.show(decode_event(line))
    finally:
        view.close()
    if not view.succeeded:
        raise ApiError(f"the pull of {name} ended before it finished")


def decode_event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ApiError(f"the server sent an invalid progress line: {line[:80]}") from exc
    if not isinstance(event, dict):
        raise ApiError(f"the server sent an invalid progress line: {line[:80]}")
    message = message_in(event)
    if message:
        raise ApiError(message)
    return event


class PullView:
    """A bar per blob (by digest) while blobs download; status lines before and after."""

    def __init__(self, out: Console) -> None:
        self.console = out
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out,
        )
        self.bars: dict[str, TaskID] = {}
        self.live = False
        self.last_status = ""
        self.succeeded = False

    def show(self, event: dict[str, Any]) -> None:
        digest = event.get("digest")
        status = event.get("status")
        if isinstance(digest, str) and digest:
            self._bar(digest, str(status or digest), event)
        elif isinstance(status, str) and status != self.last_status:
            self._status(status)

    def _bar(self, digest: str, label: str, event: dict[str, Any]) -> None:
        total = _count(event.get("total")) or None
        completed = _count(event.get("completed"))
        task = self.bars.get(digest)
        if task is None:
            if not self.live:
                self.progress.start()
                self.live = True
            # Created at the bytes already there, so a resumed download shows no burst of speed.
            self.bars[digest] = self.progress.add_task(label, total=total, completed=completed)
        else:
            self.progress.update(task, total=total, completed=completed)

    def _status(self, status: str) -> None:
        self.close()
        self.last_status = status
        self.succeeded = status == "success"
        self.console.print(status, markup=False, highlight=False)

    def close(self) -> None:
        """Stop the live bars, leaving them printed; bars of a later phase start afresh."""
        if self.live:
            self.progress.stop()
            self.live = False
            for task in self.bars.values():
                self.progress.update(task, visible=False)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
