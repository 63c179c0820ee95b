"""The Runtime: model names -> loaded engines, requests -> event streams.

Each loaded model runs its own decode thread serving `parallel` sequences at once (the engine's
continuous batching, engines/llamacpp_scheduling.py); requests beyond those wait in the engine,
at most `max_queue` of them, and the next one is answered "overloaded" at once. Before a load,
the memory planner checks the plan against the budget, evicting idle models least-recently-used
first (runtime/loader.py loads). Models stay for their keep-alive. A request's prompt is prepared
in one worker-thread call (runtime/prompts.py). The engine factory and the memory probe are
injected, so this module is testable without an engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator

from agentport.chat.families import call_format, parser_for, starts_in_thinking
from agentport.chat.stream_text import StopMatcher
from agentport.chat.tool_calls import prompt_family
from agentport.config import Settings
from agentport.core import (
    ChatRequest,
    EmbedRequest,
    ErrorEvent,
    PromptStart,
    StreamEvent,
)
from agentport.errors import OverloadedError
from agentport.planner.gguf_meta import read_shape
from agentport.planner.guard import LoadPlan
from agentport.planner.plan import plan_for
from agentport.planner.probes import probe_device
from agentport.runtime.durations import parse_keep_alive
from agentport.runtime.engine_choice import llamacpp_factory
from agentport.runtime.generation import Consumer, Mailbox
from agentport.runtime.loader import EngineFactory, LoadedModel, close_model, load_model
from agentport.runtime.memory_watch import MemoryWatch, Probe
from agentport.runtime.prompts import Prepared, prepare_prompt
from agentport.store.embedded import register_embedded
from agentport.store.models import ModelEntry, ModelStore

log = logging.getLogger("agentport.runtime")

MEMORY_LOOK_SECONDS = 5.0


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: ModelStore | None = None,
        engine_factory: EngineFactory = llamacpp_factory,
        probe: Probe = probe_device,
    ) -> None:
        self.settings = settings
        self.store = store or ModelStore(settings.models_dir)
        self.engine_factory = engine_factory
        self.memory = MemoryWatch(probe)
        self.models: dict[str, LoadedModel] = {}
        self.default_keep_alive = parse_keep_alive(settings.keep_alive)
        self._load_lock = asyncio.Lock()
        self._reaper: asyncio.Task | None = None
        self._mail: Mailbox | None = None

    # --- lifetime ----------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(register_embedded, self.store)
        self._reaper = asyncio.create_task(self._reap_expired())

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for name in list(self.models):
            await self.unload(name, wait=False)

    # --- names and models --------------------------------------------------------------------

    def resolve_name(self, requested: str) -> str:
        aliases = self.settings.aliases
        if requested in aliases:
            return aliases[requested]
        if requested.startswith("claude-") or requested in ("opus", "sonnet", "haiku"):
            return self.settings.default_model
        return requested

    def find(self, requested: str) -> ModelEntry:
        return self.store.get(self.resolve_name(requested))

    async def model(self, requested: str) -> LoadedModel:
        entry = self.find(requested)
        key = entry.name.display
        async with self._load_lock:
            if key not in self.models:
                self.models[key] = await self._load(key, entry)
            loaded = self.models[key]
            loaded.last_used = time.monotonic()
        return loaded

    def plan(self, entry: ModelEntry) -> LoadPlan:
        """The memory plan for loading `entry` now (blocking: reads the GGUF header, probes)."""
        settings = self.settings
        shape = read_shape(entry.model_path, settings.metadata_cache)
        residents = [m.resident() for m in self.models.values()]
        return plan_for(settings, shape, self.memory.look(), residents)

    async def _load(self, key: str, entry: ModelEntry) -> LoadedModel:
        plan = await asyncio.to_thread(self.plan, entry)
        for name in plan.evict:
            log.info("unloading idle %s to make room for %s", name, key)
            await self.unload(name)
        for note in plan.notes:
            log.warning("%s: %s", key, note)
        loaded = await load_model(key, entry, plan, self.settings, self.store, self.engine_factory)
        loaded.keep_alive = self.default_keep_alive
        self._touch(loaded)
        return loaded

    async def unload(self, name: str, wait: bool = True) -> None:
        """Unload once the running requests end (with `wait`; else cancel them). New requests
        load the model afresh."""
        loaded = self.models.pop(name, None)
        if loaded is None:
            return
        loaded.closed = True
        if wait:
            await loaded.idle.wait()
        await close_model(loaded)
        log.info("unloaded %s", name)

    def keep(self, loaded: LoadedModel, keep_alive: str | float | None) -> None:
        """Apply a client's keep_alive (None: leave the model's current one) and restart it."""
        if keep_alive is not None:
            loaded.keep_alive = parse_keep_alive(keep_alive)
        self._touch(loaded)

    def _touch(self, loaded: LoadedModel) -> None:
        keep = loaded.keep_alive
        loaded.expires_at = None if keep is None else time.monotonic() + keep

    async def _reap_expired(self) -> None:
        looked = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for name, loaded in list(self.models.items()):
                if loaded.expires_at is not None and loaded.expires_at <= now and not loaded.busy:
                    await self.unload(name)
            if self.models and now - looked >= MEMORY_LOOK_SECONDS:
                looked = now
                await asyncio.to_thread(self.memory.look)

    # --- requests ----------------------------------------------------------------------------

    async def prepare(self, request: ChatRequest, check_length: bool = True) -> Prepared:
        """The request's prompt rendered, tokenized and (with `check_length`, for a request
        that generates) checked against the context, its grammar compiled and its place in the
        model's queue taken; all but the model lookup in one worker-thread call."""
        started = time.perf_counter()
        loaded = await self.model(request.model)
        load_seconds = loaded.load_seconds if loaded.loaded_at >= started else 0.0
        if request.keep_alive is not None:
            loaded.keep_alive = parse_keep_alive(request.keep_alive)
        default_max = self.settings.default_max_tokens
        prompt, tokens, constraint = await asyncio.to_thread(
            prepare_prompt, request, loaded, default_max, check_length
        )
        prepared = Prepared(request, loaded, prompt, tokens, constraint, load_seconds)
        if check_length:
            self._take_place(prepared)
        return prepared

    def _take_place(self, prepared: Prepared) -> None:
        """Count the request against the model's sequences and queue from now on (checked and
        taken with no await in between, so a burst cannot overfill the queue). The place is
        given back when the generation ends, or when the Prepared is dropped unused."""
        loaded = prepared.model
        if loaded.active >= loaded.engine.info.parallel + self.settings.max_queue:
            raise OverloadedError(
                f"model '{loaded.name}' is busy: {loaded.active} requests running or queued; "
                "try again shortly",
                retry_after=2,
            )
        loaded.begin()
        prepared.release = weakref.finalize(prepared, self._end, loaded)

    def _end(self, loaded: LoadedModel) -> None:
        loaded.end()
        self._touch(loaded)

    async def embed(self, request: EmbedRequest) -> tuple[list[list[float]], int]:
        """(vectors, input tokens), on the model's worker thread after any running request."""
        loaded = await self.model(request.model)
        if request.keep_alive is not None:
            loaded.keep_alive = parse_keep_alive(request.keep_alive)
        if loaded.closed:
            raise OverloadedError(f"model '{loaded.name}' was unloaded meanwhile; try again")
        loaded.begin()
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                loaded.executor,
                loaded.engine.embed,
                request.inputs,
                request.normalize,
                request.truncate,
            )
        finally:
            loaded.end()
            self._touch(loaded)

    async def count_tokens(self, request: ChatRequest) -> int:
        prepared = await self.prepare(request, check_length=False)
        return len(prepared.tokens)

    async def generate(self, prepared: Prepared) -> AsyncIterator[list[StreamEvent]]:
        """PromptStart, then event batches until a Done or ErrorEvent."""
        loaded = prepared.model
        yield [PromptStart(input_tokens=len(prepared.tokens), model=loaded.name)]
        if loaded.closed:
            if prepared.release is not None:
                prepared.release()
            unloaded = OverloadedError(f"model '{loaded.name}' was unloaded meanwhile; try again")
            yield [ErrorEvent(unloaded)]
            return
        consumer = self._consumer(prepared)
        consumer.timings.load = prepared.load_seconds
        queue: asyncio.Queue = asyncio.Queue()
        mailbox = self._mailbox()
        try:
            loaded.engine.submit(
                prepared.tokens,
                prepared.request.sampling,
                mailbox.emitter(queue),
                consumer.cancel,
                constraint=prepared.constraint,
                deliver=mailbox.deliver,
            )
            async for batch in consumer.run(queue):
                yield batch
        finally:
            consumer.cancel.set()
            if prepared.release is not None:
                prepared.release()

    def _mailbox(self) -> Mailbox:
        """The running event loop's mailbox (one per loop: the engines deliver to it once per
        step)."""
        loop = asyncio.get_running_loop()
        if self._mail is None or self._mail.loop is not loop:
            self._mail = Mailbox(loop)
        return self._mail

    def _consumer(self, prepared: Prepared) -> Consumer:
        request = prepared.request
        forced = request.sampling.grammar is not None and not request.sampling.grammar_triggers
        thinking_open = not forced and starts_in_thinking(prepared.prompt.text)
        parser = parser_for(prepared.model.family, request.tools, thinking_open)
        if prepared.prompt.forced_prefix:
            parser.feed(prepared.prompt.forced_prefix)
        stops = list(request.sampling.stop)
        if request.tools and request.tool_choice.mode == "none":
            family = prompt_family(prepared.model.family, prepared.prompt.native_tools)
            stops.extend(call_format(family).stops)
        return Consumer(
            parser=parser,
            stops=StopMatcher(stops),
            client_stops=set(request.sampling.stop),
            cancel=threading.Event(),
            ping_interval=self.settings.ping_interval,
        )
