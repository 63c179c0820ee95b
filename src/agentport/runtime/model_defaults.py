"""A model's own defaults, from its manifest: a system prompt, sampling parameters, example
messages and a chat template, applied to each request the way Ollama applies a Modelfile.

A request's own system message wins over the model's; a model's PARAMETER applies wherever the
request left the value at agentport's default. The model's TEMPLATE replaces the GGUF's chat
template only when it is a Jinja template (Ollama's Go templates are kept for `show` only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from agentport.core import ChatRequest, Message, SamplingParams, TextPart
from agentport.store.models import (
    MESSAGES_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    ModelEntry,
    ModelStore,
)

# Ollama's parameter names -> SamplingParams fields.
PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "seed": "seed",
}
SAMPLING_DEFAULTS = {f.name: f.default for f in fields(SamplingParams)}


@dataclass
class ModelDefaults:
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    template: str | None = None  # a Jinja chat template that replaces the GGUF's


def load_defaults(store: ModelStore, entry: ModelEntry) -> ModelDefaults:
    layers = store.text_layers(entry)
    template = layers.get(TEMPLATE_MEDIA_TYPE)
    return ModelDefaults(
        system=layers.get(SYSTEM_MEDIA_TYPE) or None,
        params=_json(layers.get(PARAMS_MEDIA_TYPE), {}),
        messages=_messages(_json(layers.get(MESSAGES_MEDIA_TYPE), [])),
        template=template if template and is_jinja(template) else None,
    )


def is_jinja(template: str) -> bool:
    """Go templates address fields with a dot (`{{ .Prompt }}`); Jinja templates do not."""
    return "{{ ." not in template and "{{- ." not in template and "{{." not in template


def apply_defaults(request: ChatRequest, defaults: ModelDefaults) -> None:
    if request.prompt is None:
        _apply_messages(request, defaults)
    _apply_params(request.sampling, defaults.params)


def _apply_messages(request: ChatRequest, defaults: ModelDefaults) -> None:
    has_system = bool(request.messages) and request.messages[0].role == "system"
    head = request.messages[:1] if has_system else []
    if not has_system and defaults.system:
        head = [Message("system", [TextPart(defaults.system)])]
    rest = request.messages[1:] if has_system else request.messages
    request.messages = head + defaults.messages + rest


def _apply_params(sampling: SamplingParams, params: dict[str, Any]) -> None:
    for name, attribute in PARAMETERS.items():
        if name in params and getattr(sampling, attribute) == SAMPLING_DEFAULTS[attribute]:
            setattr(sampling, attribute, params[name])
    stops = params.get("stop") or []
    sampling.stop = list(sampling.stop) + [s for s in stops if s not in sampling.stop]
    predict = params.get("num_predict")
    if sampling.max_tokens is None and isinstance(predict, int) and predict > 0:
        sampling.max_tokens = predict


def _json(text: str | None, fallback: Any) -> Any:
    if not text:
        return fallback
    try:
        value = json.loads(text)
    except ValueError:
        return fallback
    return value if isinstance(value, type(fallback)) else fallback


def _messages(items: list[Any]) -> list[Message]:
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("role") in ("system", "user", "assistant"):
            out.append(Message(item["role"], [TextPart(str(item.get("content", "")))]))
    return out
