"""Creating models over HTTP: `POST /api/create` and `HEAD` / `POST /api/blobs/<digest>`.

`/api/create` takes Ollama's current JSON form (`from` an existing model, or `files` naming one
GGUF blob uploaded before, with `template`, `system`, `parameters`, `messages`, `license`) and the
older form with a `modelfile` text, whose FROM may be a GGUF path on this machine. Everything
cheap is checked before the answer starts, so a bad request gets its 4xx status; then the status
lines stream as NDJSON (`parsing modelfile`, `using existing layer ...` / `creating new layer
...`, `writing manifest`, `success`, or a final `{"error": ...}`), or one JSON answer when
`stream` is false.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from starlette.requests import ClientDisconnect

from agentport.api.common import Lenient, validate
from agentport.chat.families import FAMILIES
from agentport.errors import AgentportError, CancelledError, InvalidRequestError
from agentport.runtime import Runtime
from agentport.server.body import read_json
from agentport.store import create
from agentport.store.modelfile import (
    MESSAGE_ROLES,
    Modelfile,
    add_parameter,
    is_blob_reference,
    parse_modelfile,
    parser_name,
)

log = logging.getLogger("agentport.server")
router = APIRouter()

UPLOAD_FLUSH_BYTES = 4 << 20  # an upload's pieces are written to disk in batches this big


class WireMessage(Lenient):
    role: str
    content: str = ""


class WireCreateRequest(Lenient):
    model: str | None = None
    name: str | None = None  # older clients
    modelfile: str | None = None  # the older form
    from_: str | None = Field(None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    quantize: str | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[WireMessage] | None = None
    license: str | list[str] | None = None
    parser: str | None = None
    stream: bool = True


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


# --- /api/create -----------------------------------------------------------------------------


@router.post("/api/create")
async def create_model(request: Request) -> Response:
    name, parsed, stream = decode_create(await read_json(request))
    runtime = _runtime(request)
    shape_cache = request.app.state.settings.metadata_cache
    job = await asyncio.to_thread(create.plan, runtime.store, name, parsed, None, shape_cache)
    work = partial(create.build, runtime.store, job)
    if not stream:
        await asyncio.to_thread(work, lambda event: None)
        await runtime.unload(job.name.display)
        return JSONResponse({"status": "success"})
    lines = _status_lines(work, runtime, job.name.display)
    return StreamingResponse(lines, media_type="application/x-ndjson")


def decode_create(body: object) -> tuple[str, Modelfile, bool]:
    """The name, the Modelfile (the `modelfile` text, with the JSON fields over it) and
    whether to stream, from a `/api/create` body."""
    wire: WireCreateRequest = validate(WireCreateRequest, body)  # type: ignore[assignment]
    name = wire.model or wire.name
    if not name or not name.strip():
        raise InvalidRequestError("model is required", "model")
    if wire.adapters:
        raise InvalidRequestError("ADAPTER is not supported", "adapters")
    if wire.quantize:
        raise InvalidRequestError(
            "quantize is not supported; create from a GGUF file that is already quantized",
            "quantize",
        )
    parsed = parse_modelfile(wire.modelfile) if wire.modelfile else Modelfile()
    _overlay(parsed, wire)
    if parsed.parser is not None and parsed.parser not in FAMILIES:
        known = ", ".join(FAMILIES)
        raise InvalidRequestError(f"unknown parser '{parsed.parser}'; known: {known}", "parser")
    return name, parsed, wire.stream


def _overlay(parsed: Modelfile, wire: WireCreateRequest) -> None:
    if wire.files:
        parsed.source = "@" + _one_gguf(wire.files)
    elif wire.from_:
        parsed.source = wire.from_
    if wire.template is not None:
        parsed.template = wire.template
    if wire.system is not None:
        parsed.system = wire.system
    for key, value in (wire.parameters or {}).items():
        add_parameter(parsed.parameters, key, value)
    if wire.messages:
        parsed.messages = [_message(m) for m in wire.messages]
    if wire.parser is not None:
        parsed.parser = parser_name(wire.parser)
    if wire.license is not None:
        parsed.licenses = [wire.license] if isinstance(wire.license, str) else wire.license


def _one_gguf(files: dict[str, str]) -> str:
    if len(files) != 1:
        raise InvalidRequestError(
            "files must name exactly one GGUF file; agentport creates a model from one GGUF",
            "files",
        )
    digest = next(iter(files.values()))
    if not is_blob_reference("@" + digest):
        raise InvalidRequestError(f"invalid digest '{digest[:80]}'", "files")
    return digest


def _message(message: WireMessage) -> dict[str, str]:
    if message.role not in MESSAGE_ROLES:
        roles = ", ".join(MESSAGE_ROLES)
        raise InvalidRequestError(f"message role '{message.role[:40]}' must be one of {roles}")
    return {"role": message.role, "content": message.content}


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


@router.head("/api/blobs/{digest:path}")
async def blob_exists(digest: str, request: Request) -> Response:
    path = _runtime(request).store.blob_path(digest)
    return Response(status_code=200 if path.is_file() else 404)


@router.post("/api/blobs/{digest:path}")
async def upload_blob(digest: str, request: Request) -> Response:
    store = _runtime(request).store
    if store.blob_path(digest).is_file():
        return Response(status_code=200)
    upload = await asyncio.to_thread(create.BlobUpload, store, digest)
    try:
        await _receive(request, upload)
        await asyncio.to_thread(upload.commit)
    except ClientDisconnect as exc:
        upload.abort()
        raise CancelledError("the client went away during the upload") from exc
    except BaseException:
        upload.abort()
        raise
    return Response(status_code=201)


async def _receive(request: Request, upload: create.BlobUpload) -> None:
    """Write the body to the upload in batches, off the event loop."""
    pending: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        pending.append(chunk)
        size += len(chunk)
        if size >= UPLOAD_FLUSH_BYTES:
            await asyncio.to_thread(upload.write, b"".join(pending))
            pending, size = [], 0
    if pending:
        await asyncio.to_thread(upload.write, b"".join(pending))
