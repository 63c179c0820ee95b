"""Pull and push routes of the Ollama API: `POST /api/pull` streams the pull's progress as NDJSON
(or answers its last status when `stream` is false), and `POST /api/push` answers 501 until push
exists.

Errors found before the first byte is sent (a bad name, a model the registry does not have, an
invalid manifest) get their own status; the stream starts only once the manifest is in hand. An
error during the stream ends it with an `{"error": ...}` line. A client that goes away cancels
the pull; its partial downloads stay, so the next pull resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agentport.api import ollama
from agentport.errors import AgentportError, InvalidRequestError
from agentport.server.body import read_json
from agentport.store.pull import pull

router = APIRouter()
log = logging.getLogger("agentport.server")

Event = dict[str, Any]


@router.post("/api/pull")
async def pull_model(request: Request) -> Response:
    name, insecure, stream = decode_pull(await read_json(request))
    store = request.app.state.runtime.store
    events = pull(store, request.app.state.settings, name, insecure=insecure)
    head = await _head(events)
    if stream:
        return StreamingResponse(_ndjson(head, events), media_type="application/x-ndjson")
    last = head[-1] if head else {}
    async for event in events:
        last = event
    return JSONResponse(last)


@router.post("/api/push")
async def push_model() -> JSONResponse:
    return JSONResponse({"error": "push is not supported yet"}, status_code=501)


def decode_pull(body: object) -> tuple[str, bool, bool]:
    """(name, insecure, stream) of a pull request body: `model` (or the older `name`),
    `insecure` (default false) and `stream` (default true)."""
    name = ollama.model_name(body)  # raises unless body is an object with a name
    options = cast(dict[str, Any], body)
    flags = []
    for key, default in (("insecure", False), ("stream", True)):
        value = options.get(key)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequestError(f"{key} must be true or false", key)
        flags.append(default if value is None else value)
    return name, flags[0], flags[1]


async def _head(events: AsyncIterator[Event]) -> list[Event]:
    """The events up to the first one after `pulling manifest`: by then the manifest is fetched
    and checked, so its errors still get a proper HTTP status."""
    head = []
    async for event in events:
        head.append(event)
        if event.get("status") != "pulling manifest":
            break
    return head


async def _ndjson(head: list[Event], events: AsyncIterator[Event]) -> AsyncIterator[str]:
    try:
        for event in head:
            yield _line(event)
        async for event in events:
            yield _line(event)
    except AgentportError as error:
        yield _line({"error": error.message})
    except Exception:
        log.exception("pull failed")
        yield _line({"error": "internal error during the pull; see the server log"})


def _line(event: Event) -> str:
    return json.dumps(event, separators=(",", ":")) + "\n"
