"""Reading request bodies: size limit and JSON decoding, with clear errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from agentport.errors import InvalidRequestError, RequestTooLargeError
from agentport.server.state import settings_of

T = TypeVar("T")

WORKER_BYTES = 64 << 10  # bodies bigger than this are decoded in a worker thread


async def read_body(request: Request) -> bytes:
    limit = settings_of(request).max_body_bytes
    body = await request.body()
    if len(body) > limit:
        raise RequestTooLargeError(f"request body of {len(body)} bytes exceeds {limit} bytes")
    return body


async def by_size(size: int, work: Callable[[], T]) -> T:
    """`work()`, in a worker thread when the body it reads is big."""
    if size > WORKER_BYTES:
        return await asyncio.to_thread(work)
    return work()


async def read_json(request: Request) -> Any:
    body = await read_body(request)
    return await by_size(len(body), lambda: decode_json(body))


def decode_json(body: bytes) -> Any:
    if not body:
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequestError("request body is nested too deeply") from exc
