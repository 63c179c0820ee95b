"""Reading request bodies: the size limit while the body streams in, JSON decoding (in a worker
for big bodies) with numbers bounded and lone surrogate escapes replaced, and clear 4xx errors."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from agentport.errors import InvalidRequestError, RequestTooLargeError
from agentport.server.state import settings_of

T = TypeVar("T")

WORKER_BYTES = 64 << 10  # bodies bigger than this are decoded in a worker thread
INT_RANGE = (-(2**63), 2**64 - 1)  # integers beyond 64 bits have no meaning anywhere here
MAX_DEPTH = 128  # JSON schemas and content blocks nest a few levels; later stages recurse
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


async def read_body(request: Request) -> bytes:
    """The body, refused with a 413 as soon as it grows past the limit (chunked bodies too; a
    Content-Length past it was refused before any route, by `security.EdgeGuard`)."""
    limit = settings_of(request).max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def by_size(size: int, work: Callable[[], T]) -> T:
    """`work()`, in a worker thread when the body it reads is big."""
    if size > WORKER_BYTES:
        return await asyncio.to_thread(work)
    return work()


async def read_json(request: Request) -> Any:
    body = await read_body(request)
    return await by_size(len(body), lambda: decode_json(body))


def decode_json(body: bytes) -> Any:
    """A UTF-8 JSON body, nested at most MAX_DEPTH deep, with its integers within 64 bits and
    its floats finite; every lone surrogate escape in its strings becomes U+FFFD."""
    if not body:
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8-sig")
        value = json.loads(
            text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError as exc:
        raise InvalidRequestError("request body is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from exc
    if text.count("{") + text.count("[") > MAX_DEPTH:
        check_depth(value)
    if "\\ud" in text or "\\uD" in text:
        return replace_lone_surrogates(value)
    return value


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) <= 21 else None
    if value is None or not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise InvalidRequestError(f"number {text[:24]} is out of range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequestError(f"number {text[:24]} is out of range")
    return value


def _no_constant(text: str) -> Any:
    raise InvalidRequestError(f"request body is not valid JSON: {text} is not a JSON number")


def check_depth(value: Any) -> None:
    """Refuse a value nested deeper than MAX_DEPTH (iteratively: the walk must not recurse)."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidRequestError(f"request body is nested deeper than {MAX_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node
        pending.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def replace_lone_surrogates(value: Any) -> Any:
    """`value` with U+FFFD for every lone surrogate in its strings and keys (text that cannot be
    encoded as UTF-8, as a tool result of a binary file can carry). Iterative: bodies nest deep."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    pending = [value] if isinstance(value, (dict, list)) else []
    while pending:
        node = pending.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        if isinstance(node, dict):
            node.clear()
        for key, item in items:
            if isinstance(item, str):
                item = LONE_SURROGATE.sub("\ufffd", item)
            elif isinstance(item, (dict, list)):
                pending.append(item)
            if isinstance(key, str):
                key = LONE_SURROGATE.sub("\ufffd", key)
            node[key] = item
    return value
