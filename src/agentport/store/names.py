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

MAX_NAME_LENGTH = 512
# Matched whole (`fullmatch`): `$` alone would let a trailing newline through.
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?")
_DIGEST = re.compile(r"sha256[:-][0-9a-f]{64}")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")  # whitespace, control characters, non-ASCII


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
    """Parse and check a model name, matched whole: no surrounding whitespace, no control
    characters, no `..`; an `InvalidRequestError` names what is wrong."""
    _check_characters(text)
    raw, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise _invalid(text, "the digest is not sha256:<64 hex digits>")
    name, _, tag = raw.rpartition(":") if _has_tag(raw) else (raw, "", "")
    pieces = name.split("/")
    if len(pieces) > 3:
        raise _invalid(text, "too many parts")
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


def _check_characters(text: str) -> None:
    if not text:
        raise InvalidRequestError("the model name is empty", "model")
    if len(text) > MAX_NAME_LENGTH:
        raise _invalid(text, f"longer than {MAX_NAME_LENGTH} characters")
    bad = _UNPRINTABLE.search(text)
    if bad is not None:
        raise _invalid(text, f"it contains the character {bad.group()!r}")
    if ".." in text:
        raise _invalid(text, "'..' is not allowed")


def _check(part: str, pattern: re.Pattern[str], text: str) -> None:
    if not pattern.fullmatch(part):
        raise _invalid(text, f"'{part[:64]}' is not a valid part")


def _invalid(text: str, reason: str) -> InvalidRequestError:
    shown = text[:64].encode("unicode_escape").decode("ascii")
    return InvalidRequestError(f"invalid model name '{shown}': {reason}", "model")
