"""The runtime's pure logic with a scripted engine: stop sequences, tool calls, finish reasons,
prompt length, queue overflow and cancellation. (The real engine is tested in integration.)"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from agentport.config import Settings
from agentport.core import (
    ChatRequest,
    Done,
    FinishReason,
    Message,
    SamplingParams,
    TextDelta,
    TextPart,
    ToolCallStart,
    ToolChoice,
    ToolSpec,
)
from agentport.engines.base import EngineInfo, Finished, Prefilled
from agentport.errors import ModelNotFoundError, OverloadedError, PromptTooLongError
from agentport.runtime import Runtime
from agentport.store.models import MODEL_MEDIA_TYPE, ModelStore
from agentport.store.names import parse_name


class ScriptedEngine:
    def __init__(self, pieces: list[str], n_ctx: int = 4096, delay: float = 0.0) -> None:
        self.pieces = pieces
        self.delay = delay
        self.cancelled = threading.Event()
        self.info = EngineInfo(
            n_ctx=n_ctx,
            n_ctx_train=n_ctx,
            rope_scaling=None,
            chat_template=None,
            bos_token="",
            eos_token="",
            file_size=1,
        )

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def generate(self, tokens, params: SamplingParams, cancel: threading.Event):
        yield Prefilled(len(tokens), 0, 0.0)
        produced = 0
        for piece in self.pieces:
            if cancel.is_set():
                self.cancelled.set()
                yield Finished("cancelled", produced, 0.0)
                return
            time.sleep(self.delay)
            produced += 1
            yield piece
            if params.max_tokens and produced >= params.max_tokens:
                yield Finished("length", produced, 0.0)
                return
        yield Finished("stop", produced, 0.0)

    def close(self) -> None:
        pass


def make_runtime(tmp_path: Path, engine: ScriptedEngine, **settings) -> Runtime:
    store = ModelStore(tmp_path / "models")
    blob = store.write_blob_bytes(b"GGUF-fake")
    store.write_manifest(
        parse_name("fake:1b"), {"model_family": "llama"}, [{"mediaType": MODEL_MEDIA_TYPE, **blob}]
    )
    config = Settings(home=tmp_path, default_model="fake:1b", ping_interval=0.05, **settings)
    return Runtime(config, store=store, engine_factory=lambda path, s: engine)


def request(text: str = "hello there", **kwargs) -> ChatRequest:
    return ChatRequest(
        model="claude-sonnet-4-5", messages=[Message("user", [TextPart(text)])], **kwargs
    )


async def run(runtime: Runtime, chat: ChatRequest) -> list:
    prepared = await runtime.prepare(chat)
    events = []
    async for batch in runtime.generate(prepared):
        events.extend(batch)
    return events


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_claude_names_map_to_the_default_model_and_text_streams(tmp_path):
    runtime = make_runtime(tmp_path, ScriptedEngine(["Hel", "lo"]))
    events = asyncio.run(run(runtime, request()))
    assert text_of(events) == "Hello"
    assert events[-1].finish_reason == FinishReason.STOP


def test_stop_sequence_cuts_and_cancels(tmp_path):
    engine = ScriptedEngine(["one ", "two ", "th", "ree ", "four", "five"])
    runtime = make_runtime(tmp_path, engine)
    chat = request(sampling=SamplingParams(stop=["three"]))
    events = asyncio.run(run(runtime, chat))
    done = events[-1]
    assert text_of(events) == "one two "
    assert done.finish_reason == FinishReason.STOP_SEQUENCE and done.stop_sequence == "three"


def test_tool_call_sets_finish_reason(tmp_path):
    pieces = ["<tool_call>", '{"name": "Read", ', '"arguments": {"p": 1}}', "</tool_call>"]
    runtime = make_runtime(tmp_path, ScriptedEngine(pieces))
    chat = request(tools=[ToolSpec("Read")])
    events = asyncio.run(run(runtime, chat))
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["Read"]
    assert events[-1].finish_reason == FinishReason.TOOL_CALLS


def test_forced_call_is_primed_and_constrained(tmp_path):
    engine = ScriptedEngine(['{"name": "Read", ', '"arguments": {"x": 2}}'])
    runtime = make_runtime(tmp_path, engine)
    tools = [ToolSpec("Read", input_schema={"type": "object"}), ToolSpec("Bash")]
    chat = request(tools=tools, tool_choice=ToolChoice("tool", "Read"))
    events = asyncio.run(run(runtime, chat))
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["Read"]
    assert '"\\"Read\\""' in chat.sampling.grammar
    assert "Bash" not in chat.sampling.grammar


def test_max_tokens_mid_call_is_text_and_length(tmp_path):
    runtime = make_runtime(tmp_path, ScriptedEngine(["<tool_call>", '{"name": "Re']))
    chat = request(tools=[ToolSpec("Read")], sampling=SamplingParams(max_tokens=2))
    events = asyncio.run(run(runtime, chat))
    assert events[-1].finish_reason == FinishReason.LENGTH
    assert text_of(events) == '<tool_call>{"name": "Re'


def test_prompt_too_long(tmp_path):
    runtime = make_runtime(tmp_path, ScriptedEngine([], n_ctx=8))
    with pytest.raises(PromptTooLongError, match=r"prompt is too long: \d+ tokens > 8 maximum"):
        asyncio.run(run(runtime, request("word " * 50)))


def test_unknown_model_names_the_available_ones(tmp_path):
    runtime = make_runtime(tmp_path, ScriptedEngine([]))
    with pytest.raises(ModelNotFoundError, match="fake:1b"):
        asyncio.run(run(runtime, ChatRequest(model="nope:7b", messages=[])))


def test_queue_overflow_is_overloaded(tmp_path):
    engine = ScriptedEngine(["x"] * 20, delay=0.02)
    runtime = make_runtime(tmp_path, engine, max_queue=1)

    async def scenario():
        first = asyncio.create_task(run(runtime, request()))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(run(runtime, request()))
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError):
            await run(runtime, request())
        results = await asyncio.gather(first, second)
        assert all(isinstance(r[-1], Done) for r in results)

    asyncio.run(scenario())


def test_cancelling_the_consumer_stops_the_engine_and_frees_the_model(tmp_path):
    engine = ScriptedEngine(["x"] * 200, delay=0.01)
    runtime = make_runtime(tmp_path, engine)

    async def scenario():
        task = asyncio.create_task(run(runtime, request()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert engine.cancelled.is_set()
        assert not runtime.models["fake:1b"].lock.locked()

    asyncio.run(scenario())
