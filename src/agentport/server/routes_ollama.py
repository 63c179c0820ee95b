"""Ollama routes for listing and inspecting models: /api/tags, /api/ps, /api/version,
/api/show."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agentport.api import ollama
from agentport.errors import InvalidRequestError
from agentport.runtime import LoadedModel, Runtime
from agentport.server.body import read_json

router = APIRouter()


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.get("/api/version")
async def version() -> JSONResponse:
    return JSONResponse(ollama.version_response())


@router.get("/api/tags")
async def tags(request: Request) -> JSONResponse:
    return JSONResponse(ollama.tags_response(_runtime(request).store.list()))


def _expires_unix(loaded: LoadedModel) -> float | None:
    if loaded.expires_at is None:
        return None
    return time.time() + (loaded.expires_at - time.monotonic())


@router.get("/api/ps")
async def ps(request: Request) -> JSONResponse:
    rows = []
    for loaded in _runtime(request).models.values():
        info = loaded.engine.info
        rows.append(
            ollama.running_model(
                loaded.entry,
                size=info.file_size,
                expires_at=_expires_unix(loaded),
                context_length=info.n_ctx,
                rope_scaling=info.rope_scaling,
            )
        )
    return JSONResponse({"models": rows})


@router.post("/api/show")
async def show(request: Request) -> JSONResponse:
    body = await read_json(request)
    name = body.get("model") or body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("model is required", "model")
    runtime = _runtime(request)
    entry = runtime.find(name)
    loaded = await runtime.model(name)
    info = loaded.engine.info
    arch = info.architecture
    model_info = {
        "general.architecture": arch,
        "general.parameter_count": info.parameter_count,
        f"{arch}.context_length": info.n_ctx_train,
        "agentport.context_length": info.n_ctx,
        "agentport.rope_scaling": info.rope_scaling,
    }
    return JSONResponse(
        {
            "modelfile": f"FROM {entry.name.display}\n",
            "parameters": "",
            "template": loaded.template.source,
            "details": ollama.details(entry),
            "model_info": model_info,
            "capabilities": ["completion", "tools"],
            "modified_at": ollama.iso_time(entry.modified),
        }
    )
