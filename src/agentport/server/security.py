"""Edge checks, applied before any route: Host and Origin (DNS-rebinding and browser
protection for a server on loopback), the optional API key, and the body size limit."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from agentport.config import Settings
from agentport.errors import (
    AgentportError,
    AuthenticationError,
    PermissionDeniedError,
    RequestTooLargeError,
)
from agentport.server.errors import dialect_of, error_response

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
OPEN_PATHS = {"/", "/api/version"}
BLOB_UPLOADS = "/api/blobs/"


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class EdgeGuard:
    """ASGI middleware; answers refusals in the dialect of the path."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        bind_host = settings.bind[0]
        self.loopback_only = _is_loopback(bind_host)
        self.bind_host = bind_host.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self._check(scope["path"], headers)
        except AgentportError as error:
            response = error_response(error, dialect_of(scope["path"]))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, path: str, headers: dict[str, str]) -> None:
        host = _hostname(headers.get("host", ""))
        if self.loopback_only and host and not (_is_loopback(host) or host == self.bind_host):
            raise PermissionDeniedError(f"host '{host}' is not allowed")
        origin = headers.get("origin")
        if origin and not self._origin_allowed(origin):
            raise PermissionDeniedError(f"origin '{origin}' is not allowed")
        length = headers.get("content-length", "")
        upload = path.startswith(BLOB_UPLOADS)  # model weights: gigabytes, streamed to disk
        if length.isdigit() and int(length) > self.settings.max_body_bytes and not upload:
            raise RequestTooLargeError(
                f"request body of {length} bytes exceeds {self.settings.max_body_bytes} bytes"
            )
        if self.settings.api_key and path not in OPEN_PATHS:
            self._check_key(headers)

    def _origin_allowed(self, origin: str) -> bool:
        if origin in self.settings.allowed_origins or "*" in self.settings.allowed_origins:
            return True
        rest = origin.split("://", 1)[-1]
        return _is_loopback(_hostname(rest.split("/", 1)[0]))

    def _check_key(self, headers: dict[str, str]) -> None:
        key = headers.get("x-api-key") or ""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = key or auth[7:].strip()
        expected = self.settings.api_key or ""
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise AuthenticationError("invalid or missing API key")
