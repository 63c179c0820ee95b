"""Model names: `[host/][namespace/]model[:tag][@digest]`, with Ollama's defaults, and
`hf.co/{owner}/{repo}[:quant]` for GGUF repositories on Hugging Face (default quant Q4_K_M).

A name never reaches the filesystem unparsed: every part is checked against a strict pattern, so
no name can point outside the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentport.errors import InvalidRequestError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOST = "hf.co"
HF_HOSTS = {"hf.co", "huggingface.co"}
HF_DEFAULT_QUANT = "q4_k_m"

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?$")
_DIGEST = re.compile(r"^sha256[:-][0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str
    digest: str | None = None  # sha256:<hex> when the name pins one

    @property
    def is_hf(self) -> bool:
        return self.host == HF_HOST

    @property
    def display(self) -> str:
        """The short form people type: `model:tag`, or with namespace / host when not default."""
        short = f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return short
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{short}"
        return f"{self.host}/{self.namespace}/{short}"

    @property
    def parts(self) -> tuple[str, str, str, str]:
        return self.host, self.namespace, self.model, self.tag


def parse_name(text: str) -> ModelName:
    raw = text.strip()
    if not raw or len(raw) > 512:
        raise InvalidRequestError(f"invalid model name '{text[:64]}'", "model")
    raw, _, digest = raw.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidRequestError(f"invalid digest in model name '{text[:64]}'", "model")
    name, _, tag = raw.rpartition(":") if _has_tag(raw) else (raw, "", "")
    pieces = name.split("/")
    if len(pieces) > 3:
        raise InvalidRequestError(f"invalid model name '{text[:64]}': too many parts", "model")
    pieces = [DEFAULT_HOST, DEFAULT_NAMESPACE][: 3 - len(pieces)] + pieces
    host, namespace, model = pieces
    hf = host.lower() in HF_HOSTS
    tag = tag or (HF_DEFAULT_QUANT if hf else DEFAULT_TAG)
    _check(host, _HOST, text)
    for part in (namespace, model, tag):
        _check(part, _PART, text)
    if hf:  # Hugging Face repository names keep their case
        return ModelName(HF_HOST, namespace, model, tag.lower(), digest.replace("-", ":") or None)
    return ModelName(
        host.lower(),
        namespace.lower(),
        model.lower(),
        tag.lower(),
        digest.replace("-", ":") or None,
    )


def _has_tag(raw: str) -> bool:
    """A ':' after the last '/' is a tag; one inside the host part is a port."""
    return ":" in raw.rsplit("/", 1)[-1]


def _check(part: str, pattern: re.Pattern[str], text: str) -> None:
    if not pattern.match(part) or ".." in part:
        raise InvalidRequestError(f"invalid model name '{text[:64]}'", "model")
