"""`agentport run`: one-shot prompts and the interactive chat, streamed from `/v1/messages`.

The answer arrives as Anthropic server-sent events; `iter_sse` parses them and `StreamPrinter`
prints text as it comes, thinking dimmed and tool calls by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from agentport.cli.client import Client, message_in
from agentport.cli.console import print_error
from agentport.errors import ApiError

MESSAGES_PATH = "/v1/messages"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
PROMPT = ">>> "
HELP = "Commands: /bye (or Ctrl-D) to exit, /clear to forget the conversation, /? for this help."


@dataclass(frozen=True)
class ChatOptions:
    """What `agentport run` sends besides the messages."""

    system: str | None = None
    temperature: float | None = None
    max_tokens: int = 2048


def message_request(model: str, messages: list[dict[str, Any]], options: ChatOptions) -> dict:
    """The body of a streamed `POST /v1/messages`."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": options.max_tokens,
        "stream": True,
        "messages": messages,
    }
    if options.system:
        body["system"] = options.system
    if options.temperature is not None:
        body["temperature"] = options.temperature
    return body


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, data) for each server-sent event; the type falls back to data["type"]."""
    event, data = "", []
    for line in lines:
        if not line:
            if data:
                yield _sse_event(event, data)
            event, data = "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield _sse_event(event, data)


def _sse_event(event: str, data: list[str]) -> tuple[str, dict[str, Any]]:
    try:
        payload = json.loads("\n".join(data))
    except ValueError as exc:
        raise ApiError(f"the server sent an unreadable event: {data[0][:100]}") from exc
    if not isinstance(payload, dict):
        payload = {"value": payload}
    return event or str(payload.get("type", "")), payload


class StreamPrinter:
    """Prints one streamed message as its events arrive and keeps its text."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.parts: list[str] = []
        self.stop_reason: str | None = None
        self._block: str | None = None
        self._line_open = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def handle(self, event: str, data: dict[str, Any]) -> None:
        if event == "error":
            raise ApiError(message_in(data) or "the server reported an error")
        if event == "content_block_start":
            self._start(data.get("content_block") or {})
        elif event == "content_block_delta":
            self._delta(data.get("delta") or {})
        elif event == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason")

    def finish(self) -> None:
        """End the printed answer on a fresh line."""
        self._end_line()
        if self.stop_reason == "max_tokens":
            self.console.print("(stopped at --max-tokens)", style="dim")

    def _start(self, block: dict[str, Any]) -> None:
        kind = block.get("type")
        if self._block is not None:
            self._end_line()
            if self._block == "thinking":
                self.console.print()
        if kind == "tool_use":
            self.console.print(f"⚙ tool_use: {block.get('name', '?')}", style="cyan", markup=False)
        self._block = kind

    def _delta(self, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            self.parts.append(delta.get("text", ""))
            self._write(delta.get("text", ""))
        elif kind == "thinking_delta":
            self._write(delta.get("thinking", ""), style="dim")

    def _write(self, text: str, style: str | None = None) -> None:
        if text:
            self.console.print(
                text, style=style, end="", markup=False, highlight=False, soft_wrap=True
            )
            self._line_open = not text.endswith("\n")

    def _end_line(self) -> None:
        if self._line_open:
            self.console.print()
            self._line_open = False


def stream_reply(client: Client, body: dict[str, Any], console: Console) -> str:
    """Send one request, print the streamed answer, return its text."""
    printer = StreamPrinter(console)
    try:
        with client.stream(MESSAGES_PATH, body, ANTHROPIC_HEADERS) as lines:
            for event, data in iter_sse(lines):
                printer.handle(event, data)
    finally:
        printer.finish()
    return printer.text


def run_once(
    client: Client, model: str, prompt: str, options: ChatOptions, console: Console
) -> None:
    """One prompt, one streamed answer."""
    messages = [{"role": "user", "content": prompt}]
    stream_reply(client, message_request(model, messages, options), console)


def chat(client: Client, model: str, options: ChatOptions, console: Console) -> None:
    """The interactive chat: read a prompt, stream the answer, keep the conversation."""
    messages: list[dict[str, Any]] = []
    while (line := read_prompt(console)) is not None:
        command = line.strip()
        if not command:
            continue
        if command in ("/?", "/help"):
            console.print(HELP, markup=False)
        elif command == "/clear":
            messages.clear()
            console.print("Conversation cleared.", style="dim")
        else:
            chat_turn(client, model, messages, line, options, console)


def chat_turn(
    client: Client,
    model: str,
    messages: list[dict[str, Any]],
    line: str,
    options: ChatOptions,
    console: Console,
) -> None:
    """One exchange of the chat; a failed or interrupted one leaves the conversation as it was."""
    messages.append({"role": "user", "content": line})
    try:
        reply = stream_reply(client, message_request(model, messages, options), console)
    except ApiError as exc:
        print_error(exc.message)
        reply = ""
    except KeyboardInterrupt:
        console.print("(interrupted)", style="dim")
        reply = ""
    if reply:
        messages.append({"role": "assistant", "content": reply})
    else:
        messages.pop()


def read_prompt(console: Console) -> str | None:
    """The next line typed, or None at /bye or end of input (Ctrl-D)."""
    try:
        line = console.input(PROMPT, markup=False)
    except EOFError:
        console.print()
        return None
    except KeyboardInterrupt:
        console.print()
        console.print("Use Ctrl-D or /bye to exit.", style="dim")
        return ""
    return None if line.strip() == "/bye" else line
