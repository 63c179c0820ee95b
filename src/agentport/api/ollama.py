"""The Ollama API (`/api/*`): wire shapes for listing and inspecting models.

Pure functions from store entries and plain values to Ollama's JSON.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agentport import __version__
from agentport.store.models import ModelEntry


def iso_time(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def details(entry: ModelEntry, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    config = entry.config
    out = {
        "parent_model": "",
        "format": config.get("model_format", "gguf"),
        "family": config.get("model_family", ""),
        "families": [config.get("model_family", "")] if config.get("model_family") else None,
        "parameter_size": config.get("parameter_size", ""),
        "quantization_level": config.get("file_type", ""),
    }
    out.update(extra or {})
    return out


def tag(entry: ModelEntry) -> dict[str, Any]:
    name = entry.name.display
    return {
        "name": name,
        "model": name,
        "modified_at": iso_time(entry.modified),
        "size": entry.size,
        "digest": entry.digest.removeprefix("sha256:"),
        "details": details(entry),
    }


def tags_response(entries: list[ModelEntry]) -> dict[str, Any]:
    return {"models": [tag(e) for e in entries]}


def running_model(
    entry: ModelEntry,
    size: int,
    expires_at: float | None,
    context_length: int,
    rope_scaling: str | None,
) -> dict[str, Any]:
    """One /api/ps row; `expires_at` is a unix time, None for a model kept forever."""
    row = tag(entry)
    del row["modified_at"]
    row.update(
        {
            "expires_at": iso_time(expires_at) or "0001-01-01T00:00:00Z",
            "size_vram": 0,
            "context_length": context_length,
            "rope_scaling": rope_scaling,
        }
    )
    return row


def version_response() -> dict[str, str]:
    return {"version": __version__}
