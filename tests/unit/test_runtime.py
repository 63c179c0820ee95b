"""The runtime's pure logic with a scripted engine: stop sequences, tool calls, finish reasons,
prompt length, queue overflow, cancellation, eviction and keep-alive. (The real engine is tested
in integration.)"""

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
from agentport.engines.base import Constraint, EngineInfo, Finished, Prefilled, SlotUse
from agentport.errors import ModelNotFoundError, OverloadedError, PromptTooLongError
from agentport.planner.estimate import MemoryEstimate
from agentport.planner.guard import LoadPlan
from agentport.runtime import Runtime
from agentport.store.models import MODEL_MEDIA_TYPE, ModelStore
from agentport.store.names import parse_name


class ScriptedEngine:
    """Emits its pieces from a thread, one job at a time (one sequence)."""

    def __init__(self, pieces: list[str], n_ctx: int = 4096, delay: float = 0.0) -> None:
        self.pieces = pieces
        self.delay = delay
        self.cancelled = threading.Event()
        self.closed = False
        self._one_at_a_time = threading.Lock()
        self.info = EngineInfo(
            n_ctx=n_ctx,
            n_ctx_train=n_ctx,
            rope_scaling=None,
            chat_template=None,
            bos_token="",
            eos_token="",
            file_size=1,
        )

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]:
        return list(range(len(text.split())))

    def grammar_compiles(self, grammar: str) -> bool:
        return True

    def constrain(self, params: SamplingParams) -> Constraint:
        self.constrained_on = threading.current_thread()
        return Constraint(None)

    def submit(
        self, tokens, params: SamplingParams, emit, cancel, constraint=None, deliver=None
    ) -> None:
        args = (tokens, params, emit, cancel, deliver)
        threading.Thread(target=self._run, args=args, daemon=True).start()

    def _run(self, tokens, params, emit, cancel, deliver) -> None:
        with self._one_at_a_time:
            for item in self._generate(tokens, params, cancel):
                emit(item)
                deliver()

    def _generate(self, tokens, params: SamplingParams, cancel: threading.Event):
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

    def slot_use(self) -> SlotUse:
        return SlotUse(0, 0)

    def close(self) -> None:
        self.closed = True


def fake_plan(total: int = 1000) -> LoadPlan:
    estimate = MemoryEstimate(weights=total // 2, kv=total // 2, compute=0)
    return LoadPlan(n_ctx=4096, parallel=1, kv_type="f16", estimate=estimate, budget=10 * total)


def add_model(store: ModelStore, name: str) -> None:
    blob = store.write_blob_bytes(f"GGUF-fake-{name}".encode())
    store.write_manifest(
        parse_name(name), {"model_family": "llama"}, [{"mediaType": MODEL_MEDIA_TYPE, **blob}]
    )


def make_runtime(tmp_path: Path, engine: ScriptedEngine, **settings) -> Runtime:
    store = ModelStore(tmp_path / "models")
    add_model(store, "fake:1b")
    config = Settings(home=tmp_path, default_model="fake:1b", ping_interval=0.05, **settings)
    runtime = Runtime(config, store=store, engine_factory=lambda path, s, plan: engine)
    runtime.plan = lambda entry: fake_plan()
    return runtime


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
        assert runtime.models["fake:1b"].active == 0

    asyncio.run(scenario())


def test_a_new_model_evicts_the_idle_one_the_plan_names(tmp_path):
    engines = {}

    def factory(path, settings, plan):
        engines[path] = ScriptedEngine(["ok"])
        return engines[path]

    runtime = make_runtime(tmp_path, ScriptedEngine([]))
    add_model(runtime.store, "other:1b")
    runtime.engine_factory = factory
    plans = iter([fake_plan(), fake_plan()])

    def plan(entry):
        chosen = next(plans)
        if entry.name.display == "other:1b":
            chosen.evict = ["fake:1b"]
        return chosen

    runtime.plan = plan

    async def scenario():
        await run(runtime, request())
        first = runtime.models["fake:1b"].engine
        await run(runtime, ChatRequest(model="other:1b", messages=request().messages))
        assert list(runtime.models) == ["other:1b"]
        assert first.closed

    asyncio.run(scenario())


def test_residents_report_busy_models_and_idle_ones_by_age(tmp_path):
    from agentport.planner.plan import idle_by_age

    runtime = make_runtime(tmp_path, ScriptedEngine(["x"] * 50, delay=0.01))

    async def scenario():
        task = asyncio.create_task(run(runtime, request()))
        await asyncio.sleep(0.1)
        residents = [m.resident() for m in runtime.models.values()]
        assert [r.busy for r in residents] == [True]
        assert idle_by_age(residents) == []
        await task
        residents = [m.resident() for m in runtime.models.values()]
        assert idle_by_age(residents) == [("fake:1b", 1000)]

    asyncio.run(scenario())


def test_keep_alive_zero_unloads_after_the_request(tmp_path):
    engine = ScriptedEngine(["ok"])
    runtime = make_runtime(tmp_path, engine)

    async def scenario():
        await runtime.start()
        try:
            await run(runtime, request(keep_alive=0))
            for _ in range(30):
                if not runtime.models:
                    break
                await asyncio.sleep(0.1)
            assert not runtime.models and engine.closed
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_prepare_renders_tokenizes_and_compiles_off_the_event_loop(tmp_path):
    engine = ScriptedEngine(["ok"])
    runtime = make_runtime(tmp_path, engine)
    asyncio.run(run(runtime, request()))
    assert engine.constrained_on is not threading.main_thread()


def test_the_mailbox_hands_a_step_over_in_one_wake_up():
    from agentport.runtime.generation import Mailbox

    async def scenario():
        loop = asyncio.get_running_loop()
        wake_ups = []
        original = loop.call_soon_threadsafe

        def counting(callback, *args):
            if callback.__module__ == Mailbox.__module__:  # not asyncio.to_thread's own
                wake_ups.append(args)
            return original(callback, *args)

        loop.call_soon_threadsafe = counting
        mailbox, queues = Mailbox(loop), [asyncio.Queue() for _ in range(4)]
        emits = [mailbox.emitter(q) for q in queues]

        def step():
            for i, emit in enumerate(emits):
                emit(f"token {i}")
            mailbox.deliver()
            mailbox.deliver()  # nothing filed: no wake-up

        await asyncio.to_thread(step)
        await asyncio.sleep(0)
        assert len(wake_ups) == 1
        assert [q.get_nowait() for q in queues] == [f"token {i}" for i in range(4)]

    asyncio.run(scenario())
