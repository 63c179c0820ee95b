"""The prefix cache on the real engine: turn 2 reuses turn 1, a second session shares a running
session's prefix, the disk tier survives a restart, and damaged or foreign entries are ignored.
Every reused answer is the same as the cold one at temperature 0."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import LiveServer, start_server, stop_server

SYSTEM = "You are a careful coding agent. " + " ".join(
    f"Rule {i}: read the file before you edit it, and run the tests." for i in range(60)
)
ENV = {
    "AGENTPORT_CONTEXT_LENGTH": "4096",
    "AGENTPORT_PARALLEL": "2",
    "AGENTPORT_PREFIX_CACHE_MIN_TOKENS": "256",
}


def ask(url: str, question: str, max_tokens: int = 8) -> tuple[str, dict]:
    """Greedy answers are compared over 8 tokens: further on, this tiny model meets near-ties
    where llama.cpp's result depends on how many prompt tokens one batch evaluates (12 after
    a restored prefix against 73 in the cold run here), with or without any cache."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "temperature": 0,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": question}],
    }
    response = httpx.post(url + "/v1/messages", json=body, timeout=600)
    assert response.status_code == 200, response.text
    data = response.json()
    return "".join(b.get("text", "") for b in data["content"]), data["usage"]


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(f"agentport_prefix_cache_{name}_total "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(scope="module")
def cold(home: Path) -> Iterator[tuple[LiveServer, str]]:
    """A fresh server, and the cold answer to the second session's question."""
    server = start_server(home, ENV)
    try:
        text, usage = ask(server.url, "What is a linked list?")
        assert usage["cache_read_input_tokens"] == 0
        yield server, text
    finally:
        stop_server(server)


def test_the_next_turn_reuses_the_previous_one(cold):
    server, _ = cold
    first, usage1 = ask(server.url, "Name one sorting algorithm.")
    follow = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8,
        "temperature": 0,
        "system": SYSTEM,
        "messages": [
            {"role": "user", "content": "Name one sorting algorithm."},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "And another?"},
        ],
    }
    usage2 = httpx.post(server.url + "/v1/messages", json=follow, timeout=600).json()["usage"]
    assert usage2["cache_read_input_tokens"] >= usage1["input_tokens"] - 1


def test_a_second_session_shares_a_running_sessions_prefix(cold, tmp_path):
    """On a server of its own, so that no free sequence holds the question: the second
    session's prefix can only come from the running session's, copied into an empty one."""
    _, reference = cold
    server = start_server(tmp_path / "copy-home", ENV)
    try:
        copies = metric(server.url, "copies")
        started = threading.Event()
        first = threading.Thread(target=long_session, args=(server.url, started))
        first.start()
        assert started.wait(300)
        text, usage = ask(server.url, "What is a linked list?")
        first.join()
        assert usage["cache_read_input_tokens"] > 500
        assert text == reference
        assert metric(server.url, "copies") == copies + 1
    finally:
        stop_server(server)


def long_session(url: str, started: threading.Event) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "ignore_eos": True,
        "stream": True,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
    }
    with httpx.stream("POST", url + "/v1/messages", json=body, timeout=600) as response:
        for chunk in response.iter_text():
            if "content_block_delta" in chunk:
                started.set()
    started.set()


def test_the_disk_tier_survives_a_restart_and_ignores_damaged_entries(cold, home):
    server, reference = cold
    ask(server.url, "What is a linked list?")  # reused again: saved to disk if not already
    deadline = time.monotonic() + 60
    while metric(server.url, "disk_saves") < 1 and time.monotonic() < deadline:
        time.sleep(0.2)  # saved after the answer is sent
    assert metric(server.url, "disk_saves") >= 1
    stop_server(server)
    restarted = start_server(home, ENV)
    try:
        text, usage = ask(restarted.url, "What is a linked list?")
        assert usage["cache_read_input_tokens"] > 500 and text == reference
        assert metric(restarted.url, "disk_restores") == 1
    finally:
        stop_server(restarted)
    entries = list((home / "cache" / "prefixes").rglob("*.kv"))
    assert entries
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:1000])  # truncated
    foreign = home / "cache" / "prefixes" / "sha256-other" / "ctx4096-f16-yarn1-fa1"
    foreign.mkdir(parents=True)
    (foreign / "0123.json").write_text("{}")
    damaged = start_server(home, ENV)
    try:
        text, usage = ask(damaged.url, "What is a linked list?")
        assert text == reference
        assert usage["cache_read_input_tokens"] == 0
        assert metric(damaged.url, "disk_restores") == 0
    finally:
        stop_server(damaged)
    assert not any(entry.exists() for entry in entries)
    assert (foreign / "0123.json").exists()  # another model's entries are not ours to judge
