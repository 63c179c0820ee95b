"""`GET /metrics`: Prometheus text — the prefix cache's counters, and per model the sequences
in use and the requests waiting."""

from __future__ import annotations

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request

from agentport.cache.stats import REGISTRY
from agentport.server.state import runtime_of


async def metrics(request: Request) -> Response:
    lines = [generate_latest(REGISTRY).decode()]
    lines.append("# HELP agentport_sequences_busy Sequences generating now, per model.")
    lines.append("# TYPE agentport_sequences_busy gauge")
    waiting = [
        "# HELP agentport_requests_waiting Requests waiting for a sequence, per model.",
        "# TYPE agentport_requests_waiting gauge",
    ]
    for name, loaded in list(runtime_of(request).models.items()):
        use = loaded.engine.slot_use()
        label = name.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'agentport_sequences_busy{{model="{label}"}} {use.busy}')
        waiting.append(f'agentport_requests_waiting{{model="{label}"}} {use.waiting}')
    return Response("\n".join(lines + waiting) + "\n", media_type=CONTENT_TYPE_LATEST)
