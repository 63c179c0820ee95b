"""The batch loop under a race (issue 13): on 4 sequences of the real engine, 40 requests
arrive from 4 threads while others are cancelled (before, while waiting, mid-stream) or run to
their end; bounded in count and time. No stream fails, and each ends exactly once."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from agentport.core import SamplingParams
from agentport.engines.base import Finished
from agentport.engines.llamacpp import EngineOptions, LlamaCppEngine

REQUESTS_PER_THREAD = 10
THREADS = 4
DEADLINE = 60.0


@pytest.fixture(scope="module")
def engine(gguf: Path):
    engine = LlamaCppEngine(gguf, EngineOptions(n_ctx=1024, parallel=4, threads=1))
    yield engine
    engine.close()


class Stream:
    def __init__(self) -> None:
        self.items: list[object] = []
        self.filed: list[object] = []
        self.ended = threading.Event()

    def emit(self, item: object) -> None:  # files, as the runtime's mailbox does
        self.filed.append(item)

    def deliver(self) -> None:
        self.items.extend(self.filed)
        self.filed.clear()
        if self.items and isinstance(self.items[-1], Finished | Exception):
            self.ended.set()


def arrivals(engine, seed: int, streams: list[Stream]) -> None:
    rng = random.Random(seed)
    for i in range(REQUESTS_PER_THREAD):
        stream, cancel = Stream(), threading.Event()
        streams.append(stream)
        tokens = engine.tokenize(f"Request {seed}-{i}: write about rivers and tea.")
        params = SamplingParams(max_tokens=rng.randint(1, 40), temperature=0.8, seed=i)
        when = rng.random()
        if when < 0.1:
            cancel.set()  # gone before it arrived
        elif when < 0.5:
            threading.Timer(rng.uniform(0.0, 0.3), cancel.set).start()
        engine.submit(tokens, params, stream.emit, cancel, deliver=stream.deliver)
        time.sleep(rng.uniform(0.0, 0.05))


def test_arrivals_cancellations_and_completions_race_without_a_failed_stream(engine):
    streams: list[Stream] = []
    threads = [
        threading.Thread(target=arrivals, args=(engine, seed, streams)) for seed in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    deadline = time.monotonic() + DEADLINE
    for stream in streams:
        assert stream.ended.wait(max(deadline - time.monotonic(), 0.1))
    assert len(streams) == THREADS * REQUESTS_PER_THREAD
    for stream in streams:
        ends = [item for item in stream.items if not isinstance(item, str)]
        finished = ends[-1]
        assert isinstance(finished, Finished), ends  # never an error
        assert finished.reason in ("stop", "length", "cancelled")
        assert sum(isinstance(item, Finished) for item in ends) == 1
    assert engine.slot_use().busy == 0 and engine.slot_use().waiting == 0
