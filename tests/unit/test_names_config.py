"""Model names, settings parsing, keep-alive durations and the stop-sequence matcher."""

from __future__ import annotations

import pytest

from agentport.chat.stream_text import StopMatcher
from agentport.config import Settings, describe, parse_host
from agentport.errors import InvalidRequestError
from agentport.runtime.durations import parse_keep_alive
from agentport.store.names import parse_name


@pytest.mark.parametrize(
    "text,parts,display",
    [
        ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m"), "smollm2:135m"),
        ("smollm2", ("registry.ollama.ai", "library", "smollm2", "latest"), "smollm2:latest"),
        ("me/coder:7b", ("registry.ollama.ai", "me", "coder", "7b"), "me/coder:7b"),
        ("localhost:5000/me/m:v1", ("localhost:5000", "me", "m", "v1"), "localhost:5000/me/m:v1"),
        (
            "hf.co/Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
            ("hf.co", "Qwen", "Qwen2.5-Coder-7B-Instruct-GGUF", "q4_k_m"),
            "hf.co/Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:q4_k_m",
        ),
        (
            "huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q8_0",
            ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "q8_0"),
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:q8_0",
        ),
        (
            "Qwen2.5-Coder:7B",
            ("registry.ollama.ai", "library", "qwen2.5-coder", "7b"),
            "qwen2.5-coder:7b",
        ),
    ],
)
def test_names(text, parts, display):
    name = parse_name(text)
    assert name.parts == parts and name.display == display


def test_digest_pins():
    digest = "sha256:" + "a" * 64
    assert parse_name(f"smollm2:135m@{digest}").digest == digest
    with pytest.raises(InvalidRequestError):
        parse_name("smollm2@sha256:../../x")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("/abs/path", "not a valid part"),
        ("m:..", "'..'"),
        ("a/b/c/d", "too many parts"),
        ("m:t/x", "not a valid part"),
        ("m;rm", "not a valid part"),
        ("é", "character"),
        ("smollm2:135m\n", "character '\\n'"),
        ("smollm2\n:135m", "character"),
        (" smollm2", "character ' '"),
        ("smollm2:135m ", "character"),
        ("smol\x00lm2", "character '\\x00'"),
        ("smol\x1blm2", "character"),
        ("smollm2\t", "character"),
        ("m@sha256:" + "a" * 64 + "\n", "character"),
        ("m@sha256:" + "a" * 63, "digest"),
        ("a" * 129, "not a valid part"),
        ("x" * 513, "longer than 512"),
        ("host:99999999/m/x", "not a valid part"),
        ("-m", "not a valid part"),
    ],
)
def test_hostile_names_are_refused_with_the_reason(text, reason):
    with pytest.raises(InvalidRequestError) as caught:
        parse_name(text)
    assert reason in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize(
    "value,expected",
    [
        ("127.0.0.1:11434", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        (":8080", ("127.0.0.1", 8080)),
        ("8080", ("127.0.0.1", 8080)),
        ("http://localhost:9000/", ("localhost", 9000)),
        ("[::1]:7000", ("::1", 7000)),
    ],
)
def test_host_forms(value, expected):
    assert parse_host(value) == expected


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("AGENTPORT_HOST", "0.0.0.0:1234")
    monkeypatch.setenv("AGENTPORT_ALIASES", "fast=smollm2:135m, big=qwen:7b")
    monkeypatch.setenv("AGENTPORT_CONTEXT_LENGTH", "16384")
    settings = Settings()
    assert settings.bind == ("0.0.0.0", 1234)
    assert settings.aliases == {"fast": "smollm2:135m", "big": "qwen:7b"}
    rows = {row[0]: row for row in describe(settings)}
    assert rows["AGENTPORT_CONTEXT_LENGTH"][1:3] == ("16384", "environment")
    assert rows["AGENTPORT_THREADS"][2] == "default"
    assert all(row[3] for row in rows.values()), "every setting has a description"


def test_defaults_are_agent_friendly():
    settings = Settings()
    assert settings.bind == ("127.0.0.1", 11434)
    assert settings.context_length >= 32768


def test_api_key_is_never_printed(monkeypatch):
    monkeypatch.setenv("AGENTPORT_API_KEY", "secret-key")
    rows = {row[0]: row for row in describe(Settings())}
    assert rows["AGENTPORT_API_KEY"][1] == "(set)"


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("0", 0),
        (0, 0),
        (120, 120),
        ("-1", None),
        (-1, None),
        ("-5m", None),
        ("250ms", 0.25),
    ],
)
def test_keep_alive(value, seconds):
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5x", "m5", ""])
def test_bad_keep_alive(value):
    with pytest.raises(InvalidRequestError):
        parse_keep_alive(value)


def test_stop_matcher_across_pieces():
    matcher = StopMatcher(["END", "\n\n"])
    out = [matcher.feed(p) for p in ["Hello E", "N", "D tail"]]
    assert "".join(out) == "Hello " and matcher.matched == "END"


def test_stop_matcher_releases_false_starts():
    matcher = StopMatcher(["END"])
    assert matcher.feed("EN") == ""
    assert matcher.feed("x") == "ENx"
    assert matcher.flush() == "" and matcher.matched is None
