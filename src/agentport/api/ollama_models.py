"""The Ollama API's model management (`/api/*`): request bodies of create, pull, push, copy,
show and delete decoded to plain core values, and the answers of /api/tags, /api/ps, /api/show
and /api/version. Pure functions, no I/O: the server hands the decoded values to the store.

`/api/create` takes Ollama's current JSON form (`from` an existing model, or `files` naming one
GGUF blob uploaded before, with `template`, `system`, `parameters`, `messages`, `license`) and the
older form with a `modelfile` text; both become one `CreateRequest`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from agentport import __version__
from agentport.api.common import Lenient, validate
from agentport.api.ollama import iso_time
from agentport.core import CreateRequest, ModelSummary, RegistryRequest
from agentport.errors import InvalidRequestError

# --- wire models ---------------------------------------------------------------------------


class WireCopyRequest(Lenient):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


class WireCreateMessage(Lenient):
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
    messages: list[WireCreateMessage] | None = None
    license: str | list[str] | None = None
    parser: str | None = None
    stream: bool = True


# --- request -> core ---------------------------------------------------------------------


def decode_copy(body: object) -> tuple[str, str]:
    wire: WireCopyRequest = validate(WireCopyRequest, body)  # type: ignore[assignment]
    return wire.source, wire.destination


def model_name(body: object) -> str:
    """The model of /api/show and /api/delete: `model`, or the older `name`."""
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("model is required", "model")
    return name


def decode_create(body: object) -> CreateRequest:
    """A `/api/create` body. Only the wire is checked here; the Modelfile text, the parameters'
    types and the digest's form are the store's to check."""
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
    licenses = [wire.license] if isinstance(wire.license, str) else wire.license
    return CreateRequest(
        name=name,
        modelfile=wire.modelfile or None,
        blob=_one_gguf(wire.files) if wire.files else None,
        source=wire.from_,
        template=wire.template,
        system=wire.system,
        parameters=dict(wire.parameters or {}),
        messages=[{"role": m.role, "content": m.content} for m in wire.messages or []],
        licenses=licenses,
        parser=wire.parser,
        stream=wire.stream,
    )


def _one_gguf(files: dict[str, str]) -> str:
    if len(files) != 1:
        raise InvalidRequestError(
            "files must name exactly one GGUF file; agentport creates a model from one GGUF",
            "files",
        )
    return next(iter(files.values()))


def decode_registry_request(body: object) -> RegistryRequest:
    """A pull (or push) body: `model` (or the older `name`), `insecure` (default false) and
    `stream` (default true)."""
    name = model_name(body)  # raises unless body is an object with a name
    assert isinstance(body, dict)
    flags = []
    for key, default in (("insecure", False), ("stream", True)):
        value = body.get(key)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequestError(f"{key} must be true or false", key)
        flags.append(default if value is None else value)
    return RegistryRequest(name, insecure=flags[0], stream=flags[1])


# --- core -> wire ------------------------------------------------------------------------

# --- models --------------------------------------------------------------------------------

# A model kept loaded forever expires, as in Ollama, at the largest Go duration from now.
FOREVER_SECONDS = (2**63 - 1) / 1e9


def details(entry: ModelSummary, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    config = entry.config
    family = config.get("model_family", "")
    out = {
        "parent_model": "",
        "format": config.get("model_format", "gguf"),
        "family": family,
        "families": [family] if family else None,
        "parameter_size": config.get("parameter_size", ""),
        "quantization_level": config.get("file_type", ""),
    }
    out.update({k: v for k, v in (extra or {}).items() if v})
    return out


def tag(entry: ModelSummary) -> dict[str, Any]:
    name = entry.name
    return {
        "name": name,
        "model": name,
        "modified_at": iso_time(entry.modified),
        "size": entry.size,
        "digest": entry.digest.removeprefix("sha256:"),
        "details": details(entry),
    }


def tags_response(entries: list[ModelSummary]) -> dict[str, Any]:
    return {"models": [tag(e) for e in entries]}


@dataclass(slots=True)
class RunningFacts:
    """What /api/ps reports about one loaded model, gathered by the route from the runtime."""

    size: int  # bytes in memory: what llama.cpp reported at load, else the plan
    expires_in: float | None  # seconds from now; None: kept forever
    context_length: int  # per sequence
    rope_scaling: str | None
    parallel: int
    kv_type: str
    busy: int
    waiting: int
    planned: dict[str, int]
    actual: dict[str, int]
    extra_details: dict[str, Any] | None = None


def running_model(entry: ModelSummary, facts: RunningFacts) -> dict[str, Any]:
    """One /api/ps row: Ollama's fields, then agentport's memory plan and slots."""
    row = tag(entry)
    del row["modified_at"]
    row["details"] = details(entry, facts.extra_details)
    seconds = FOREVER_SECONDS if facts.expires_in is None else max(0.0, facts.expires_in)
    row.update(
        {
            "size": facts.size,
            "expires_at": iso_time(time.time() + seconds),
            "size_vram": 0,
            "context_length": facts.context_length,
            "rope_scaling": facts.rope_scaling,
            "parallel": facts.parallel,
            "kv_type": facts.kv_type,
            "slots": {"total": facts.parallel, "busy": facts.busy, "waiting": facts.waiting},
            "memory": {"planned": facts.planned, "actual": facts.actual},
        }
    )
    return row


@dataclass(slots=True)
class ModelFacts:
    """What /api/show reports about a model, gathered by the route from the loaded engine and
    the manifest's optional layers."""

    template: str
    architecture: str
    parameter_count: int
    parameter_size: str
    quantization: str
    n_ctx_train: int
    n_ctx: int
    rope_scaling: str | None
    fill_in_the_middle: bool
    license: str = ""
    system: str = ""
    parameters: dict[str, Any] | None = None
    modelfile: str = ""  # a Modelfile that recreates the model


def capabilities(facts: ModelFacts) -> list[str]:
    out = ["completion", "tools"]
    if facts.fill_in_the_middle:
        out.append("insert")
    out.append("embedding")
    if "<think>" in facts.template:
        out.append("thinking")
    return out


def parameters_text(parameters: dict[str, Any] | None) -> str:
    """Ollama's `parameters`: one `name value` line per value, lists one line per item."""
    lines = []
    for key, value in (parameters or {}).items():
        for item in value if isinstance(value, list) else [value]:
            shown = json.dumps(item, ensure_ascii=False) if isinstance(item, str) else item
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)


def show_response(entry: ModelSummary, facts: ModelFacts) -> dict[str, Any]:
    arch = facts.architecture
    model_info = {
        "general.architecture": arch,
        "general.parameter_count": facts.parameter_count,
        f"{arch}.context_length": facts.n_ctx_train,
        "agentport.context_length": facts.n_ctx,
        "agentport.rope_scaling": facts.rope_scaling,
    }
    extra = {"parameter_size": facts.parameter_size, "quantization_level": facts.quantization}
    out = {
        "license": facts.license,
        "modelfile": facts.modelfile,
        "parameters": parameters_text(facts.parameters),
        "template": facts.template,
        "details": details(entry, extra),
        "model_info": model_info,
        "capabilities": capabilities(facts),
        "modified_at": iso_time(entry.modified),
    }
    if facts.system:
        out["system"] = facts.system
    return out


def version_response() -> dict[str, str]:
    return {"version": __version__}
