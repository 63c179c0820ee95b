"""Model-management values free of any wire dialect: what a create, pull or push request asks
for, and the summary of a stored model that listings show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ModelSummary:
    """A stored model as listings show it."""

    name: str  # as displayed, e.g. smollm2:135m
    digest: str  # sha256:<hex> of the manifest
    size: int
    modified: float  # unix time
    config: dict[str, Any] = field(default_factory=dict)  # the manifest's config object


@dataclass(slots=True)
class CreateRequest:
    """A model to create: an optional Modelfile text, with the fields given one by one over it
    (None: not given). `blob` is the digest of an uploaded GGUF file to create from; `source`
    any other FROM (a model name or a GGUF path)."""

    name: str
    modelfile: str | None = None
    blob: str | None = None
    source: str | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    licenses: list[str] | None = None
    parser: str | None = None
    stream: bool = True


@dataclass(slots=True)
class RegistryRequest:
    """A pull (or push) of model `name`; `insecure` allows a registry over plain HTTP."""

    name: str
    insecure: bool = False
    stream: bool = True
