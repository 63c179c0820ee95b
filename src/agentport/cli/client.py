"""A tiny HTTP client of agentport's own API, used by every command except `serve`.

Connection failures become `ServerNotRunningError` (the message says how to start the server);
error answers become `ApiError` carrying the server's own message, read from any of the three
dialects' error bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from agentport.config import Settings
from agentport.errors import ApiError, ServerNotRunningError

DEFAULT_TIMEOUT = 10.0
# Prefill of a long prompt can take minutes; the server pings meanwhile.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=600.0)


class Client:
    """Requests to the server at `settings.base_url`, with its API key when one is set."""

    def __init__(self, settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = settings.base_url
        headers = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_json(self, path: str) -> Any:
        """GET `path` and decode its JSON body; error answers raise `ApiError`."""
        return self.request_json("GET", path)

    def request_json(self, method: str, path: str, body: Any = None) -> Any:
        """A request with an optional JSON body; returns the decoded answer (None if empty),
        error answers raise `ApiError`."""
        with self._connecting():
            response = self._http.request(method, path, json=body)
        if response.is_error:
            raise ApiError(error_message(response.status_code, response.text))
        if not response.text.strip():
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"the server sent invalid JSON for {path}") from exc

    def has_blob(self, digest: str) -> bool:
        """Whether the server stores the blob `digest` (`HEAD /api/blobs/<digest>`)."""
        with self._connecting():
            response = self._http.head(f"/api/blobs/{digest}")
        if response.status_code not in (200, 404):
            raise ApiError(error_message(response.status_code, response.text))
        return response.status_code == 200

    def upload_blob(self, digest: str, path: Path) -> None:
        """Send the file `path` as the blob `digest` (with its Content-Length)."""
        with self._connecting(), path.open("rb") as body:
            response = self._http.post(f"/api/blobs/{digest}", content=body)
        if response.is_error:
            raise ApiError(error_message(response.status_code, response.text))

    def check(self, timeout: float = 1.0) -> None:
        """Raise `ServerNotRunningError` unless something answers `HEAD /` within `timeout`."""
        with self._connecting():
            self._http.head("/", timeout=timeout)

    @contextmanager
    def stream(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Iterator[Any]:
        """POST `body` to `path` and yield the lines of the streamed answer."""
        with (
            self._connecting(),
            self._http.stream(
                "POST", path, json=body, headers=headers, timeout=STREAM_TIMEOUT
            ) as response,
        ):
            if response.is_error:
                response.read()
                raise ApiError(error_message(response.status_code, response.text))
            yield response.iter_lines()

    @contextmanager
    def _connecting(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerNotRunningError(self.base_url) from exc
        except httpx.TransportError as exc:
            raise ApiError(f"connection to the server at {self.base_url} failed: {exc}") from exc


def error_message(status: int, body: str) -> str:
    """The message of an error answer: Anthropic, OpenAI and Ollama bodies are understood."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = message_in(data)
    if message:
        return message
    return f"the server answered {status}: {body.strip()[:200] or 'no details'}"


def message_in(data: Any) -> str | None:
    """The message of a decoded error body, or None if it holds none."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):  # Anthropic and OpenAI: {"error": {"message": ...}}
        message = error.get("message")
        return str(message) if message else None
    if isinstance(error, str):  # Ollama: {"error": "..."}
        return error
    return None
