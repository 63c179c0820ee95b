"""Several sessions on one model, on the real engine: concurrent streams give the same text as
when run alone, a request beyond the queue is refused at once in each dialect, and a client that
goes away frees its sequence."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

PROMPTS = [
    f"Write a short note about {topic}. The note:"
    for topic in ("rivers", "glass", "owls", "copper", "tea", "winter", "chess", "bread")
]


def complete(url: str, prompt: str, tokens: int = 24) -> str:
    body = {
        "model": "smollm2:135m",
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "seed": 7,
        "ignore_eos": True,
        "stream": True,
    }
    text = []
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                import json

                text.append(json.loads(line[6:])["choices"][0]["text"])
    return "".join(text)


def slots(url: str) -> dict:
    models = httpx.get(url + "/api/ps", timeout=10).json()["models"]
    return next(m["slots"] for m in models if m["name"] == "smollm2:135m")


def wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_eight_concurrent_streams_match_their_solo_runs(server):
    alone = [complete(server.url, prompt) for prompt in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: complete(server.url, p), PROMPTS))
    assert all(alone), alone
    assert together == alone


class HeldStream:
    """A long streaming request that reads its first bytes, then waits to be let go."""

    def __init__(self, url: str, index: int) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.status = 0
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 2000,
            "ignore_eos": True,
            "stream": True,
            "messages": [{"role": "user", "content": f"Count to a thousand, run {index}."}],
        }
        self.thread = threading.Thread(target=self._run, args=(url, body), daemon=True)
        self.thread.start()

    def _run(self, url: str, body: dict) -> None:
        with httpx.stream("POST", url + "/v1/messages", json=body, timeout=300) as response:
            self.status = response.status_code
            for _ in response.iter_bytes():
                self.started.set()
                if self.release.is_set():
                    break
        self.started.set()


@pytest.fixture
def full_model(server):
    """All sequences busy and the queue full (4 running + 4 waiting, the defaults here)."""
    held = [HeldStream(server.url, i) for i in range(8)]
    assert wait_for(lambda: all(h.started.is_set() for h in held))
    assert wait_for(lambda: sum(slots(server.url).values()) - 4 == 8), slots(server.url)
    yield held
    for stream in held:
        stream.release.set()
    for stream in held:
        stream.thread.join(timeout=60)


def test_beyond_the_queue_each_dialect_says_overloaded_at_once(server, full_model):
    assert [h.status for h in full_model] == [200] * 8
    hello = [{"role": "user", "content": "hi"}]
    anthropic = httpx.post(
        server.url + "/v1/messages",
        json={"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": hello},
        timeout=30,
    )
    assert anthropic.status_code == 529
    assert anthropic.json()["error"]["type"] == "overloaded_error"
    assert int(anthropic.headers["retry-after"]) >= 1
    openai = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "smollm2:135m", "max_tokens": 8, "messages": hello},
        timeout=30,
    )
    assert openai.status_code == 503 and "retry-after" in openai.headers
    ollama = httpx.post(
        server.url + "/api/chat",
        json={"model": "smollm2:135m", "messages": hello, "stream": False},
        timeout=30,
    )
    assert ollama.status_code == 503 and "error" in ollama.json()


def test_a_client_that_goes_away_frees_its_sequence(server, full_model):
    for stream in full_model[:2]:
        stream.release.set()
    # Two running streams gone: the two first queued requests take their sequences.
    assert wait_for(lambda: slots(server.url)["waiting"] == 2, timeout=30), slots(server.url)
    for stream in full_model[2:]:
        stream.release.set()
    assert wait_for(lambda: slots(server.url)["busy"] == 0, timeout=30), slots(server.url)
    assert complete(server.url, "After the rush:", tokens=4)
