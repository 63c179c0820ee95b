"""`GET /metrics`: Prometheus text — the prefix cache's counters, and per model the sequences
in use and the requests waiting. prometheus_client writes every line, so label values are
escaped by its exposition code."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request

from agentport.cache.stats import REGISTRY
from agentport.runtime import Runtime
from agentport.server.state import runtime_of


class SlotCollector(Collector):
    """Per loaded model: sequences generating now and requests waiting for one."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        busy = GaugeMetricFamily(
            "agentport_sequences_busy", "Sequences generating now, per model.", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "agentport_requests_waiting",
            "Requests waiting for a sequence, per model.",
            labels=["model"],
        )
        for name, loaded in list(self.runtime.models.items()):
            use = loaded.engine.slot_use()
            busy.add_metric([name], use.busy)
            waiting.add_metric([name], use.waiting)
        yield busy
        yield waiting


async def metrics(request: Request) -> Response:
    slots = CollectorRegistry(auto_describe=False)
    slots.register(SlotCollector(runtime_of(request)))
    text = generate_latest(REGISTRY) + generate_latest(slots)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
