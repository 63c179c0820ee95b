"""Golden cases for Ollama's model-management bodies: /api/create (both forms), /api/pull and
/api/push decoded to core values, and the bodies refused with a 400."""

from __future__ import annotations

import pytest

from agentport.api import ollama_models
from agentport.core import CreateRequest, RegistryRequest
from agentport.errors import InvalidRequestError

DIGEST = "sha256:" + "ab" * 32

CREATE_CASES = [
    ("older form", {"name": "m", "modelfile": "FROM x"}, CreateRequest("m", modelfile="FROM x")),
    (
        "from a model",
        {"model": "m", "from": "base:1", "system": "Be brief.", "stream": False},
        CreateRequest("m", source="base:1", system="Be brief.", stream=False),
    ),
    (
        "from an uploaded file",
        {
            "model": "m",
            "files": {"model.gguf": DIGEST},
            "parameters": {"temperature": 0.5},
            "messages": [{"role": "user", "content": "hi"}],
            "license": "MIT",
            "parser": "qwen3-coder",
            "template": "{{ .Prompt }}",
        },
        CreateRequest(
            "m",
            blob=DIGEST,
            parameters={"temperature": 0.5},
            messages=[{"role": "user", "content": "hi"}],
            licenses=["MIT"],
            parser="qwen3-coder",
            template="{{ .Prompt }}",
        ),
    ),
]


@pytest.mark.parametrize("name,body,expected", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_decode_create(name, body, expected):
    assert ollama_models.decode_create(body) == expected


@pytest.mark.parametrize(
    "body,param",
    [
        ({"from": "x"}, "model"),
        ({"model": " "}, "model"),
        ({"model": "m", "adapters": {"a": DIGEST}}, "adapters"),
        ({"model": "m", "quantize": "q4_0"}, "quantize"),
        ({"model": "m", "files": {"a.gguf": DIGEST, "b.gguf": DIGEST}}, "files"),
        ({"model": "m", "stream": "maybe"}, None),
        ([], None),
    ],
)
def test_decode_create_refusals(body, param):
    with pytest.raises(InvalidRequestError) as caught:
        ollama_models.decode_create(body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "body,expected",
    [
        ({"model": "m"}, RegistryRequest("m")),
        ({"name": "m", "insecure": True, "stream": False}, RegistryRequest("m", True, False)),
        ({"model": "m", "insecure": None}, RegistryRequest("m")),
    ],
)
def test_decode_registry_request(body, expected):
    assert ollama_models.decode_registry_request(body) == expected


@pytest.mark.parametrize("body", [{}, {"model": "m", "insecure": "yes"}, ["m"]])
def test_decode_registry_request_refusals(body):
    with pytest.raises(InvalidRequestError):
        ollama_models.decode_registry_request(body)
