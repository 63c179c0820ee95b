"""Errors at the edge: each dialect's own error body and status, never a traceback."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from agentport.api import anthropic, openai
from agentport.errors import AgentportError, InternalError, OverloadedError

log = logging.getLogger("agentport.server")

# OpenAI and Ollama statuses (Anthropic has its own, with 529 for overloaded).
HTTP_STATUS = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "rate_limit": 429,
    "overloaded": 503,
    "cancelled": 499,
    "upstream": 502,
    "internal": 500,
}


def dialect_of(path: str) -> str:
    if path.startswith("/api/"):
        return "ollama"
    if path.startswith("/v1/messages") or path == "/v1/models/anthropic":
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    return "anthropic"


def error_response(error: AgentportError, dialect: str) -> JSONResponse:
    if dialect == "ollama":
        status, body = HTTP_STATUS.get(error.kind, 500), {"error": error.message}
    elif dialect == "openai":
        status, body = HTTP_STATUS.get(error.kind, 500), openai.error_body(error)
    else:
        status, body = anthropic.error_body(error)
    headers = {}
    if isinstance(error, OverloadedError):
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(body, status_code=status, headers=headers)


async def handle_agentport_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentportError)
    return error_response(exc, dialect_of(request.url.path))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    error = InternalError("internal error in agentport; see the server log")
    return error_response(error, dialect_of(request.url.path))
