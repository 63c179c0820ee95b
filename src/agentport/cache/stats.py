"""Prefix cache counters, exported in Prometheus' text format at `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry()


def _counter(name: str, description: str) -> Counter:
    return Counter(f"agentport_prefix_cache_{name}", description, registry=REGISTRY)


HITS = _counter("hits", "Requests that started from a cached prefix")
MISSES = _counter("misses", "Requests that found no cached prefix")
TOKENS_REUSED = _counter("reused_tokens", "Prompt tokens taken from the cache, not evaluated")
TOKENS_EVALUATED = _counter("evaluated_tokens", "Prompt tokens evaluated")
COPIES = _counter("copies", "Prefixes copied from another sequence (another session)")
DISK_SAVES = _counter("disk_saves", "Prefixes saved to the disk tier")
DISK_RESTORES = _counter("disk_restores", "Prefixes restored from the disk tier")
DISK_REJECTS = _counter("disk_rejects", "Disk entries found damaged and removed")
EVICTIONS = _counter("evictions", "Parked prefixes overwritten to make room")
