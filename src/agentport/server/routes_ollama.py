"""Ollama routes (`/api/*`): chat, generate, embeddings, and listing, inspecting, copying and
deleting models. Each handler is decode, dispatch to the runtime, encode."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentport.api import ollama
from agentport.core import ChatRequest
from agentport.planner.gguf_meta import format_params
from agentport.runtime import LoadedModel, Runtime
from agentport.runtime.durations import parse_keep_alive
from agentport.server.body import read_json
from agentport.server.streaming import collect, ndjson_response
from agentport.store import create
from agentport.store.models import LICENSE_MEDIA_TYPE, PARAMS_MEDIA_TYPE, SYSTEM_MEDIA_TYPE
from agentport.store.names import parse_name

router = APIRouter()


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


# --- generation ------------------------------------------------------------------------------


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    body = ollama.decode_chat(await read_json(request))
    return await _generate(_runtime(request), body, "chat")


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    body = ollama.decode_generate(await read_json(request))
    return await _generate(_runtime(request), body, "generate")


async def _generate(
    runtime: Runtime, chat: ChatRequest, endpoint: Literal["chat", "generate"]
) -> Response:
    if ollama.is_load_only(chat):
        return await _load_or_unload(runtime, chat, endpoint)
    prepared = await runtime.prepare(chat)
    batches = runtime.generate(prepared)
    if chat.stream:
        encoder_type = (
            ollama.ChatStreamEncoder if endpoint == "chat" else ollama.GenerateStreamEncoder
        )
        return ndjson_response(batches, encoder_type(chat.model).encode_batch)
    builder_type = ollama.ChatBuilder if endpoint == "chat" else ollama.GenerateBuilder
    builder = builder_type(chat.model)
    done = await collect(batches, builder.add)
    return JSONResponse(builder.build(done))


async def _load_or_unload(
    runtime: Runtime, chat: ChatRequest, endpoint: Literal["chat", "generate"]
) -> JSONResponse:
    """Nothing to generate: load the model, or unload it when `keep_alive` is 0 (as Ollama)."""
    keep = None if chat.keep_alive is None else parse_keep_alive(chat.keep_alive)
    entry = runtime.find(chat.model)
    if keep == 0:
        await runtime.unload(entry.name.display)
        return JSONResponse(ollama.load_response(chat.model, endpoint, "unload"))
    loaded = await runtime.model(chat.model)
    runtime.keep(loaded, chat.keep_alive)
    return JSONResponse(ollama.load_response(chat.model, endpoint, "load"))


# --- embeddings ------------------------------------------------------------------------------


@router.post("/api/embed")
async def embed(request: Request) -> JSONResponse:
    embed_request, dimensions = ollama.decode_embed(await read_json(request))
    runtime = _runtime(request)
    started = time.perf_counter()
    await runtime.model(embed_request.model)
    load = time.perf_counter() - started
    vectors: list[list[float]] = []
    tokens = 0
    if embed_request.inputs:
        vectors, tokens = await runtime.embed(embed_request)
    vectors = [ollama.shorten(list(v), dimensions) for v in vectors]
    total = time.perf_counter() - started
    return JSONResponse(ollama.embed_response(embed_request.model, vectors, tokens, total, load))


@router.post("/api/embeddings")
async def embeddings(request: Request) -> JSONResponse:
    embed_request = ollama.decode_embeddings(await read_json(request))
    runtime = _runtime(request)
    if not embed_request.inputs:
        await runtime.model(embed_request.model)
        return JSONResponse({"embedding": []})
    vectors, _ = await runtime.embed(embed_request)
    return JSONResponse({"embedding": list(vectors[0])})


# --- models ----------------------------------------------------------------------------------


@router.get("/api/version")
async def version() -> JSONResponse:
    return JSONResponse(ollama.version_response())


@router.get("/api/tags")
async def tags(request: Request) -> JSONResponse:
    entries = await asyncio.to_thread(_runtime(request).store.list)
    return JSONResponse(ollama.tags_response(entries))


def _expires_in(loaded: LoadedModel) -> float | None:
    if loaded.expires_at is None:
        return None
    return loaded.expires_at - time.monotonic()


@router.get("/api/ps")
async def ps(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    rows = [ollama.running_model(m.entry, _running_facts(m)) for m in list(runtime.models.values())]
    return JSONResponse({"models": rows, "memory": runtime.memory.status()})


def _running_facts(loaded: LoadedModel) -> ollama.RunningFacts:
    info, estimate = loaded.engine.info, loaded.plan.estimate
    planned = {
        "weights": estimate.weights,
        "kv": estimate.kv,
        "compute": estimate.compute,
        "total": estimate.total,
    }
    reported = getattr(loaded.engine, "reported_memory", None)
    actual = {}
    if reported is not None and reported.total:
        actual = {
            "weights": reported.weights,
            "kv": reported.kv,
            "compute": reported.compute,
            "total": reported.total,
        }
    use = loaded.engine.slot_use()
    return ollama.RunningFacts(
        size=actual.get("total") or planned["total"],
        expires_in=_expires_in(loaded),
        context_length=info.n_ctx,
        rope_scaling=info.rope_scaling,
        parallel=info.parallel,
        kv_type=info.kv_type,
        busy=use.busy,
        waiting=use.waiting,
        planned=planned,
        actual=actual,
        extra_details=_engine_details(info.parameter_count, info.quantization),
    )


def _engine_details(parameter_count: int, quantization: str) -> dict[str, str]:
    size = format_params(parameter_count) if parameter_count else ""
    return {"parameter_size": size, "quantization_level": quantization}


@router.post("/api/show")
async def show(request: Request) -> JSONResponse:
    name = ollama.model_name(await read_json(request))
    runtime = _runtime(request)
    entry = runtime.find(name)
    loaded = await runtime.model(name)
    layers = await asyncio.to_thread(runtime.store.text_layers, entry)
    facts = _facts(loaded, layers)
    facts.modelfile = await asyncio.to_thread(create.show_modelfile, runtime.store, entry)
    return JSONResponse(ollama.show_response(entry, facts))


def _facts(loaded: LoadedModel, layers: dict[str, str]) -> ollama.ModelFacts:
    info = loaded.engine.info
    try:
        parameters = json.loads(layers.get(PARAMS_MEDIA_TYPE) or "{}")
    except ValueError:
        parameters = {}
    return ollama.ModelFacts(
        template=loaded.template.source,
        architecture=info.architecture,
        parameter_count=info.parameter_count,
        parameter_size=_engine_details(info.parameter_count, "")["parameter_size"],
        quantization=info.quantization,
        n_ctx_train=info.n_ctx_train,
        n_ctx=info.n_ctx,
        rope_scaling=info.rope_scaling,
        fill_in_the_middle=info.fim_tokens is not None,
        license=layers.get(LICENSE_MEDIA_TYPE, ""),
        system=layers.get(SYSTEM_MEDIA_TYPE, ""),
        parameters=parameters if isinstance(parameters, dict) else {},
    )


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    source, destination = ollama.decode_copy(await read_json(request))
    store = _runtime(request).store
    await asyncio.to_thread(store.copy, source, destination)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    name = ollama.model_name(await read_json(request))
    runtime = _runtime(request)
    await runtime.unload(parse_name(name).display)
    await asyncio.to_thread(runtime.store.delete, name)
    return Response(status_code=200)
