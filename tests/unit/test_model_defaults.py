"""A model's Modelfile defaults applied to requests."""

from __future__ import annotations

import json

from agentport.core import ChatRequest, Message, SamplingParams, TextPart
from agentport.runtime.model_defaults import ModelDefaults, apply_defaults, is_jinja, load_defaults
from agentport.store.models import (
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    ModelStore,
)
from agentport.store.names import parse_name


def chat(*messages: Message, **sampling) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), sampling=SamplingParams(**sampling))


USER = Message("user", [TextPart("hi")])
DEFAULTS = ModelDefaults(
    system="You are a pirate.",
    params={"temperature": 0.2, "stop": ["<END>"], "num_predict": 99, "top_k": 7},
    messages=[Message("user", [TextPart("ahoy")]), Message("assistant", [TextPart("arr")])],
)


def test_model_system_and_messages_come_first():
    request = chat(USER)
    apply_defaults(request, DEFAULTS)
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "user"]
    assert request.messages[0].text() == "You are a pirate."


def test_request_system_wins():
    request = chat(Message("system", [TextPart("Be brief.")]), USER)
    apply_defaults(request, DEFAULTS)
    assert request.messages[0].text() == "Be brief." and len(request.messages) == 4


def test_parameters_fill_what_the_request_left_at_default():
    request = chat(USER, top_k=3, stop=["x"])
    apply_defaults(request, DEFAULTS)
    sampling = request.sampling
    assert (sampling.temperature, sampling.top_k, sampling.max_tokens) == (0.2, 3, 99)
    assert sampling.stop == ["x", "<END>"]


def test_raw_prompts_get_parameters_but_no_messages():
    request = ChatRequest(model="m", messages=[], prompt="raw")
    apply_defaults(request, DEFAULTS)
    assert request.messages == [] and request.sampling.temperature == 0.2


def test_go_templates_are_not_used():
    assert not is_jinja("{{ .System }} {{ .Prompt }}")
    assert is_jinja("{% for m in messages %}{{ m['content'] }}{% endfor %}")


def test_layers_are_read_from_the_manifest(tmp_path):
    store = ModelStore(tmp_path)
    layers = [{"mediaType": MODEL_MEDIA_TYPE, **store.write_blob_bytes(b"GGUF")}]
    for kind, data in [
        (SYSTEM_MEDIA_TYPE, b"Be kind."),
        (TEMPLATE_MEDIA_TYPE, b"{{ .Prompt }}"),
        (PARAMS_MEDIA_TYPE, json.dumps({"temperature": 0.1}).encode()),
    ]:
        layers.append({"mediaType": kind, **store.write_blob_bytes(data)})
    store.write_manifest(parse_name("x:1"), {}, layers)
    defaults = load_defaults(store, store.get("x:1"))
    assert defaults.system == "Be kind." and defaults.params == {"temperature": 0.1}
    assert defaults.template is None
