"""Ollama routes (`/api/*`) besides chat, generate, create and pull: embeddings, and listing,
inspecting, copying and deleting models. Each handler is decode, dispatch to the runtime,
encode."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from agentport.api import ollama, ollama_models
from agentport.core import ModelSummary
from agentport.planner.gguf_meta import format_params
from agentport.runtime import LoadedModel
from agentport.server.body import read_json
from agentport.server.state import runtime_of
from agentport.store import create
from agentport.store.models import (
    LICENSE_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    ModelEntry,
)
from agentport.store.names import parse_name

# --- embeddings ------------------------------------------------------------------------------


async def embed(request: Request) -> JSONResponse:
    embed_request, dimensions = ollama.decode_embed(await read_json(request))
    runtime = runtime_of(request)
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


async def embeddings(request: Request) -> JSONResponse:
    embed_request = ollama.decode_embeddings(await read_json(request))
    runtime = runtime_of(request)
    if not embed_request.inputs:
        await runtime.model(embed_request.model)
        return JSONResponse({"embedding": []})
    vectors, _ = await runtime.embed(embed_request)
    return JSONResponse({"embedding": list(vectors[0])})


# --- models ----------------------------------------------------------------------------------


async def version(request: Request) -> JSONResponse:
    return JSONResponse(ollama_models.version_response())


async def tags(request: Request) -> JSONResponse:
    entries = await asyncio.to_thread(runtime_of(request).store.list)
    return JSONResponse(ollama_models.tags_response([summary(e) for e in entries]))


def summary(entry: ModelEntry) -> ModelSummary:
    return ModelSummary(entry.name.display, entry.digest, entry.size, entry.modified, entry.config)


def _expires_in(loaded: LoadedModel) -> float | None:
    if loaded.expires_at is None:
        return None
    return loaded.expires_at - time.monotonic()


async def ps(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    loaded = list(runtime.models.values())
    rows = [ollama_models.running_model(summary(m.entry), _running_facts(m)) for m in loaded]
    return JSONResponse({"models": rows, "memory": runtime.memory.status()})


def _running_facts(loaded: LoadedModel) -> ollama_models.RunningFacts:
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
    return ollama_models.RunningFacts(
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


async def show(request: Request) -> JSONResponse:
    name = ollama_models.model_name(await read_json(request))
    runtime = runtime_of(request)
    entry = runtime.find(name)
    loaded = await runtime.model(name)
    layers = await asyncio.to_thread(runtime.store.text_layers, entry)
    facts = _facts(loaded, layers)
    facts.modelfile = await asyncio.to_thread(create.show_modelfile, runtime.store, entry)
    return JSONResponse(ollama_models.show_response(summary(entry), facts))


def _facts(loaded: LoadedModel, layers: dict[str, str]) -> ollama_models.ModelFacts:
    info = loaded.engine.info
    try:
        parameters = json.loads(layers.get(PARAMS_MEDIA_TYPE) or "{}")
    except ValueError:
        parameters = {}
    return ollama_models.ModelFacts(
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


async def copy(request: Request) -> Response:
    source, destination = ollama_models.decode_copy(await read_json(request))
    store = runtime_of(request).store
    await asyncio.to_thread(store.copy, source, destination)
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    name = ollama_models.model_name(await read_json(request))
    runtime = runtime_of(request)
    await runtime.unload(parse_name(name).display)
    await asyncio.to_thread(runtime.store.delete, name)
    return Response(status_code=200)
