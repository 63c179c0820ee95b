"""Every route, declared in one table: a path, its methods, and either a chat codec (served by
the one chat handler) or a handler of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from starlette.requests import Request

from agentport.api import anthropic, ollama, openai, responses
from agentport.api.common import ChatCodec
from agentport.server import routes_create, routes_metrics, routes_ollama, routes_store, routes_v1
from agentport.server.chat import serve_chat

Handler = Callable[[Request], Awaitable[Response]]


async def root(request: Request) -> Response:
    return PlainTextResponse("agentport is running")


async def telemetry(request: Request) -> Response:
    """Claude Code's event logging: accepted and dropped."""
    return Response(status_code=204)


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    methods: tuple[str, ...]
    target: ChatCodec[Any] | Handler


ROUTES = (
    # chat, one codec per endpoint
    Route("/v1/messages", ("POST",), anthropic.MESSAGES),
    Route("/v1/chat/completions", ("POST",), openai.CHAT_COMPLETIONS),
    Route("/v1/completions", ("POST",), openai.COMPLETIONS),
    Route("/v1/responses", ("POST",), responses.RESPONSES),
    Route("/api/chat", ("POST",), ollama.CHAT),
    Route("/api/generate", ("POST",), ollama.GENERATE),
    # the rest of /v1
    Route("/v1/messages/count_tokens", ("POST",), routes_v1.count_tokens),
    Route("/v1/responses/input_tokens", ("POST",), routes_v1.input_tokens),
    Route("/v1/embeddings", ("POST",), routes_v1.embeddings),
    Route("/v1/models", ("GET",), routes_v1.models),
    Route("/v1/models/{model_id:path}", ("GET",), routes_v1.model),
    # the rest of /api
    Route("/api/embed", ("POST",), routes_ollama.embed),
    Route("/api/embeddings", ("POST",), routes_ollama.embeddings),
    Route("/api/version", ("GET",), routes_ollama.version),
    Route("/api/tags", ("GET",), routes_ollama.tags),
    Route("/api/ps", ("GET",), routes_ollama.ps),
    Route("/api/show", ("POST",), routes_ollama.show),
    Route("/api/copy", ("POST",), routes_ollama.copy),
    Route("/api/delete", ("DELETE",), routes_ollama.delete),
    Route("/api/create", ("POST",), routes_create.create_model),
    Route("/api/blobs/{digest:path}", ("HEAD",), routes_create.blob_exists),
    Route("/api/blobs/{digest:path}", ("POST",), routes_create.upload_blob),
    Route("/api/pull", ("POST",), routes_store.pull_model),
    Route("/api/push", ("POST",), routes_store.push_model),
    # the rest
    Route("/metrics", ("GET",), routes_metrics.metrics),
    Route("/", ("GET", "HEAD"), root),
    Route("/api/event_logging/batch", ("POST",), telemetry),
)


def chat_handler(codec: ChatCodec[Any]) -> Handler:
    async def chat(request: Request) -> Response:
        return await serve_chat(request, codec)

    return chat


def add_routes(app: FastAPI, routes: tuple[Route, ...] = ROUTES) -> None:
    for route in routes:
        target = route.target
        handler = chat_handler(target) if isinstance(target, ChatCodec) else target
        app.add_route(route.path, handler, methods=list(route.methods))
