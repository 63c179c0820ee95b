"""Creating models over HTTP: `POST /api/create` and `HEAD` / `POST /api/blobs/<digest>`.

`/api/create` takes Ollama's current JSON form and the older form with a `modelfile` text, whose
FROM may be a GGUF path on this machine (both decoded by `api.ollama_models`). Everything cheap
is checked, in a worker, before the answer starts, so a bad request gets its 4xx status; then
the status lines stream as NDJSON (`parsing modelfile`, `using existing layer ...` / `creating
new layer ...`, `writing manifest`, `success`, or a final `{"error": ...}`), or one JSON answer
when `stream` is false.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect, Request

from agentport.api import ollama_models
from agentport.chat.families import FAMILIES
from agentport.config import Settings
from agentport.core import CreateRequest
from agentport.errors import AgentportError, CancelledError, InvalidRequestError
from agentport.runtime import Runtime
from agentport.server.body import read_json
from agentport.server.state import runtime_of, settings_of
from agentport.store import create
from agentport.store.modelfile import (
    MESSAGE_ROLES,
    Modelfile,
    add_parameter,
    is_blob_reference,
    parse_modelfile,
    parser_name,
)
from agentport.store.models import ModelStore

log = logging.getLogger("agentport.server")


# --- /api/create -----------------------------------------------------------------------------


async def create_model(request: Request) -> Response:
    wanted = ollama_models.decode_create(await read_json(request))
    runtime = runtime_of(request)
    job = await asyncio.to_thread(_plan, runtime.store, wanted, settings_of(request))
    work = partial(create.build, runtime.store, job)
    if not wanted.stream:
        await asyncio.to_thread(work, lambda event: None)
        await runtime.unload(job.name.display)
        return JSONResponse({"status": "success"})
    lines = _status_lines(work, runtime, job.name.display)
    return StreamingResponse(lines, media_type="application/x-ndjson")


def _plan(store: ModelStore, wanted: CreateRequest, settings: Settings) -> create.CreatePlan:
    """Every cheap check of a create, in a worker: the Modelfile is parsed, the base found."""
    parsed = modelfile_for(wanted)
    return create.plan(store, wanted.name, parsed, settings.import_dir, settings.metadata_cache)


def modelfile_for(wanted: CreateRequest) -> Modelfile:
    """The Modelfile of a create request: its `modelfile` text, with the fields given one by
    one over it."""
    parsed = parse_modelfile(wanted.modelfile) if wanted.modelfile else Modelfile()
    if wanted.blob is not None:
        if not is_blob_reference("@" + wanted.blob):
            raise InvalidRequestError(f"invalid digest '{wanted.blob[:80]}'", "files")
        parsed.source = "@" + wanted.blob
    elif wanted.source:
        parsed.source = wanted.source
    if wanted.template is not None:
        parsed.template = wanted.template
    if wanted.system is not None:
        parsed.system = wanted.system
    for key, value in wanted.parameters.items():
        add_parameter(parsed.parameters, key, value)
    if wanted.messages:
        parsed.messages = [_message(m) for m in wanted.messages]
    if wanted.licenses is not None:
        parsed.licenses = wanted.licenses
    if wanted.parser is not None:
        parsed.parser = parser_name(wanted.parser)
    if parsed.parser is not None and parsed.parser not in FAMILIES:
        known = ", ".join(FAMILIES)
        raise InvalidRequestError(f"unknown parser '{parsed.parser}'; known: {known}", "parser")
    return parsed


def _message(message: dict[str, str]) -> dict[str, str]:
    if message["role"] not in MESSAGE_ROLES:
        roles = ", ".join(MESSAGE_ROLES)
        raise InvalidRequestError(f"message role '{message['role'][:40]}' must be one of {roles}")
    return message


async def _status_lines(
    work: Callable[[create.Progress], None], runtime: Runtime, name: str
) -> AsyncIterator[str]:
    """Run `work` in a thread and stream the status dicts it reports, then `success` (after
    unloading the model's old version) or the error."""
    yield _line({"status": "parsing modelfile"})
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    task = asyncio.ensure_future(
        asyncio.to_thread(work, lambda event: loop.call_soon_threadsafe(queue.put_nowait, event))
    )
    task.add_done_callback(lambda _: queue.put_nowait(None))
    while (event := await queue.get()) is not None:
        yield _line(event)
    try:
        task.result()
    except AgentportError as error:
        yield _line({"error": error.message})
        return
    except Exception:
        log.exception("creating %s failed", name)
        yield _line({"error": "internal error while creating the model; see the server log"})
        return
    await runtime.unload(name)
    yield _line({"status": "success"})


def _line(event: dict[str, Any]) -> str:
    return json.dumps(event) + "\n"


# --- /api/blobs ------------------------------------------------------------------------------


async def blob_exists(request: Request) -> Response:
    path = runtime_of(request).store.blob_path(request.path_params["digest"])
    return Response(status_code=200 if path.is_file() else 404)


async def upload_blob(request: Request) -> Response:
    digest = request.path_params["digest"]
    store = runtime_of(request).store
    if store.blob_path(digest).is_file():
        return Response(status_code=200)
    announced = create.parse_content_length(request.headers.get("content-length"))
    margin = settings_of(request).disk_margin
    try:
        await create.receive_blob(store, digest, announced, request.stream(), margin)
    except ClientDisconnect as exc:
        raise CancelledError("the client went away during the upload") from exc
    return Response(status_code=201)
