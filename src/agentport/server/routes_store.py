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
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import Request

from agentport.api import ollama_models
from agentport.errors import AgentportError
from agentport.server.body import read_json
from agentport.server.state import runtime_of, settings_of
from agentport.store.pull import pull

log = logging.getLogger("agentport.server")

Event = dict[str, Any]


async def pull_model(request: Request) -> Response:
    wanted = ollama_models.decode_registry_request(await read_json(request))
    store = runtime_of(request).store
    events = pull(store, settings_of(request), wanted.name, insecure=wanted.insecure)
    head = await _head(events)
    if wanted.stream:
        return StreamingResponse(_ndjson(head, events), media_type="application/x-ndjson")
    last = head[-1] if head else {}
    async for event in events:
        last = event
    return JSONResponse(last)


async def push_model(request: Request) -> JSONResponse:
    ollama_models.decode_registry_request(await read_json(request))
    return JSONResponse({"error": "push is not supported yet"}, status_code=501)


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
