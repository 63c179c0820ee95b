"""Drivers: send one generation to a target and record its event timeline.

`HttpDriver` streams one chat request in the Anthropic (`/v1/messages`), OpenAI
(`/v1/chat/completions`) or Ollama (`/api/chat`) dialect over loopback HTTP, at temperature 0
with a fixed seed and, where the dialect lets a server honour it, `ignore_eos` (Ollama has no
such option: its runs may stop early, which the report flags). Each line of the stream is stamped
with `time.perf_counter()` when it arrives; a content delta (text, thinking or tool-call
arguments) becomes one entry of the `Timeline`.

`HttpDriver.send` streams any body (an agent's whole conversation, say) the same way. Besides
the three dialects, `llama-completion` is llama-server's own `/completion`, for a prompt text
rendered here (its last event carries the cached and evaluated prompt tokens).

`EngineDriver` does the same for an Engine called directly, through the protocol of
`agentport.engines.base`: `submit(tokens, params, emit, cancel)`, then `Prefilled`, text pieces
and `Finished` from the engine's thread.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agentport.bench.metrics import Timeline
from agentport.errors import AgentportError, ApiError, InvalidRequestError, ServerNotRunningError

DIALECTS = ("anthropic", "openai", "ollama")
SEED = 1234
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Prompt:
    """One chat request's text and length limit."""

    system: str
    user: str
    max_tokens: int
    seed: int = SEED
    tools: tuple[dict, ...] = ()  # Anthropic-shaped definitions, offered with tool_choice auto


def loopback(url: str) -> tuple[str, int]:
    """Host and port of an http URL; anything but a loopback host is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise InvalidRequestError(f"only http://127.0.0.1 URLs can be benchmarked, got {url!r}")
    return parts.hostname, parts.port or 80


# ---------------------------------------------------------------------------- request bodies


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]


def anthropic_body(model: str, prompt: Prompt) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": prompt.max_tokens,
        "stream": True,
        "temperature": 0,
        "seed": prompt.seed,
        "ignore_eos": True,
        "system": prompt.system,
        "messages": [{"role": "user", "content": prompt.user}],
    } | _anthropic_tools(prompt)


def _anthropic_tools(prompt: Prompt) -> dict[str, Any]:
    return {"tools": list(prompt.tools), "tool_choice": {"type": "auto"}} if prompt.tools else {}


def _openai_tools(prompt: Prompt) -> dict[str, Any]:
    if not prompt.tools:
        return {}
    functions = [
        {"type": "function", "function": {"name": t["name"], "description": t["description"],
                                          "parameters": t["input_schema"]}}
        for t in prompt.tools
    ]  # fmt: skip
    return {"tools": functions, "tool_choice": "auto"}


def openai_body(model: str, prompt: Prompt) -> dict[str, Any]:
    return {
        "model": model,
        "messages": _messages(prompt),
        "max_tokens": prompt.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "seed": prompt.seed,
        "ignore_eos": True,
    } | _openai_tools(prompt)


def ollama_body(model: str, prompt: Prompt) -> dict[str, Any]:
    options = {"temperature": 0, "seed": prompt.seed, "num_predict": prompt.max_tokens}
    body = {"model": model, "messages": _messages(prompt), "stream": True, "options": options}
    return body | {"tools": _openai_tools(prompt)["tools"]} if prompt.tools else body


# ---------------------------------------------------------------------------- stream payloads


def anthropic_event(payload: dict, t: float, tl: Timeline) -> None:
    """Fold one Anthropic stream event into the timeline."""
    kind = payload.get("type")
    if kind == "content_block_delta":
        delta = payload.get("delta") or {}
        if delta.get("text") or delta.get("thinking") or delta.get("partial_json"):
            tl.delta(t)
    elif kind in ("message_start", "message_delta"):
        usage = (payload.get("message") or payload).get("usage") or {}
        _anthropic_usage(usage, tl)
    elif kind == "error":
        raise ApiError(f"the server sent an error event: {json.dumps(payload)[:500]}")


def _anthropic_usage(usage: dict, tl: Timeline) -> None:
    prompt_keys = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    if any(usage.get(k) for k in prompt_keys):
        tl.prompt_tokens = sum(int(usage.get(k) or 0) for k in prompt_keys)
    if usage.get("cache_read_input_tokens") is not None:
        tl.cached_tokens = int(usage["cache_read_input_tokens"])
    if usage.get("output_tokens"):
        tl.output_tokens = int(usage["output_tokens"])


def openai_event(payload: dict, t: float, tl: Timeline) -> None:
    """Fold one OpenAI chat-completion chunk into the timeline."""
    if "error" in payload:
        raise ApiError(f"the server sent an error: {json.dumps(payload)[:500]}")
    for choice in payload.get("choices") or []:
        delta = choice.get("delta") or {}
        content = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
        if content or delta.get("tool_calls"):
            tl.delta(t)
    usage = payload.get("usage")
    if usage:
        tl.prompt_tokens = usage.get("prompt_tokens", tl.prompt_tokens)
        tl.output_tokens = usage.get("completion_tokens", tl.output_tokens)


def ollama_event(payload: dict, t: float, tl: Timeline) -> None:
    """Fold one Ollama `/api/chat` NDJSON object into the timeline."""
    if "error" in payload:
        raise ApiError(f"the server sent an error: {json.dumps(payload)[:500]}")
    message = payload.get("message") or {}
    if message.get("content") or message.get("thinking") or message.get("tool_calls"):
        tl.delta(t)
    if payload.get("done"):
        tl.prompt_tokens = payload.get("prompt_eval_count", tl.prompt_tokens)
        tl.output_tokens = payload.get("eval_count", tl.output_tokens)


def completion_body(model: str, prompt: Prompt) -> dict[str, Any]:
    """llama-server's `/completion` of ``prompt.user`` as the whole prompt text, uncached."""
    return {
        "prompt": prompt.user,
        "n_predict": prompt.max_tokens,
        "temperature": 0,
        "seed": prompt.seed,
        "ignore_eos": True,
        "stream": True,
        "cache_prompt": False,
    }


def completion_event(payload: dict, t: float, tl: Timeline) -> None:
    """Fold one llama-server `/completion` event; the last (``stop``) carries the counts."""
    if "error" in payload:
        raise ApiError(f"the server sent an error: {json.dumps(payload)[:500]}")
    if payload.get("content"):
        tl.delta(t)
    if not payload.get("stop"):
        return
    timings = payload.get("timings") or {}
    cached, evaluated = timings.get("cache_n"), timings.get("prompt_n")
    if cached is not None and evaluated is not None:
        tl.cached_tokens, tl.prompt_tokens = int(cached), int(cached) + int(evaluated)
    if payload.get("tokens_predicted") is not None:
        tl.output_tokens = int(payload["tokens_predicted"])


@dataclass(frozen=True)
class Dialect:
    path: str
    body: Callable[[str, Prompt], dict[str, Any]]
    event: Callable[[dict, float, Timeline], None]
    sse: bool  # server-sent events; else one JSON object per line
    headers: tuple[tuple[str, str], ...] = ()


DIALECT_TABLE: dict[str, Dialect] = {
    "anthropic": Dialect(
        "/v1/messages",
        anthropic_body,
        anthropic_event,
        True,
        (("anthropic-version", "2023-06-01"),),
    ),
    "openai": Dialect("/v1/chat/completions", openai_body, openai_event, True),
    "ollama": Dialect("/api/chat", ollama_body, ollama_event, False),
    "llama-completion": Dialect("/completion", completion_body, completion_event, True),
}


def payloads(lines: Iterator[tuple[float, bytes]], sse: bool) -> Iterator[tuple[float, dict]]:
    """Decoded JSON payloads of a stream's lines: SSE `data:` lines, or NDJSON lines."""
    for t, raw in lines:
        line = raw.strip()
        if sse:
            if not line.startswith(b"data:"):
                continue
            line = line[5:].strip()
            if line == b"[DONE]":
                continue
        if line:
            yield t, json.loads(line)


# ---------------------------------------------------------------------------- drivers


class HttpDriver:
    """Streams chat requests to one server in one dialect and records their timelines."""

    def __init__(self, url: str, dialect: str, model: str, timeout: float = 600.0) -> None:
        if dialect not in DIALECT_TABLE:
            raise InvalidRequestError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")
        self.url, self.model, self.timeout = url, model, timeout
        self.host, self.port = loopback(url)
        self.dialect = DIALECT_TABLE[dialect]

    def run(self, prompt: Prompt) -> Timeline:
        """One streamed generation; raises ApiError when the server answers with an error."""
        return self.send(self.dialect.body(self.model, prompt))

    def send(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Timeline:
        """Stream ``body`` to the dialect's path and record its timeline."""
        all_headers = {"content-type": "application/json", **dict(self.dialect.headers)}
        all_headers.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            tl = Timeline(time.perf_counter())
            conn.request("POST", self.dialect.path, json.dumps(body), all_headers)
            resp = conn.getresponse()
            if resp.status // 100 != 2:
                raise ApiError(f"POST {self.dialect.path} -> {resp.status}: {resp.read()[:500]!r}")
            for t, payload in payloads(_stamped_lines(resp, tl), self.dialect.sse):
                self.dialect.event(payload, t, tl)
            tl.t_end = time.perf_counter()
            return tl
        except ConnectionRefusedError as exc:
            raise ServerNotRunningError(self.url) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ApiError(f"{self.url}{self.dialect.path}: {exc}") from exc
        finally:
            conn.close()


def _stamped_lines(resp: http.client.HTTPResponse, tl: Timeline) -> Iterator[tuple[float, bytes]]:
    while raw := resp.readline():
        t = time.perf_counter()
        if tl.t_first_byte is None:
            tl.t_first_byte = t
        yield t, raw


class EngineDriver:
    """Runs generations on an Engine directly and records their timelines."""

    def __init__(self, engine: Any, timeout: float = 600.0) -> None:
        self.engine, self.timeout = engine, timeout

    def run(self, tokens: list[int], params: Any) -> Timeline:
        """One generation of ``tokens`` under ``params`` (a SamplingParams); waits for its end."""
        from agentport.engines.base import Finished, Prefilled

        tl = Timeline(time.perf_counter())
        done, failure = threading.Event(), []

        def emit(item: object) -> None:
            t = time.perf_counter()
            if isinstance(item, str):
                if item:
                    tl.delta(t)
            elif isinstance(item, Prefilled):
                tl.prompt_tokens, tl.t_prefilled = item.prompt_tokens, t
            elif isinstance(item, Finished):
                tl.output_tokens, tl.t_end = item.output_tokens, t
                done.set()
            elif isinstance(item, BaseException):
                failure.append(item)
                done.set()

        cancel = threading.Event()
        tl.t_sent = time.perf_counter()
        self.engine.submit(tokens, params, emit, cancel)
        if not done.wait(self.timeout):
            cancel.set()
            raise ApiError(f"the engine did not finish within {self.timeout:.0f} s")
        if failure and isinstance(failure[0], AgentportError):
            raise failure[0]
        if failure:
            raise ApiError(f"the engine failed: {failure[0]}") from failure[0]
        return tl
