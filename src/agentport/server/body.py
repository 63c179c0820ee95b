"""Reading request bodies: size limit and JSON decoding, with clear errors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from agentport.errors import InvalidRequestError, RequestTooLargeError


async def read_json(request: Request) -> Any:
    limit = request.app.state.settings.max_body_bytes
    body = await request.body()
    if len(body) > limit:
        raise RequestTooLargeError(f"request body of {len(body)} bytes exceeds {limit} bytes")
    if not body:
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequestError("request body is nested too deeply") from exc
