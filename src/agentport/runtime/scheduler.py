"""The Runtime: model names -> loaded engines, prompts -> tokens, requests -> event streams.

Each loaded model runs its own decode thread serving `parallel` sequences at once (the engine's
continuous batching); requests beyond those wait in the engine, at most `max_queue` of them, and
the next one is answered "overloaded" at once. Before a load, the memory planner checks the plan
against the budget, evicting idle models least-recently-used first. Models stay for their
keep-alive. The engine factory and the memory probe are injected, so this module is testable
without an engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agentport.chat.families import call_format, family_for, parser_for, starts_in_thinking
from agentport.chat.grammar import json_grammar
from agentport.chat.render import RenderedPrompt, render
from agentport.chat.stream_text import StopMatcher
from agentport.chat.template import ChatTemplate
from agentport.chat.tool_calls import calls_grammar, prompt_family
from agentport.config import Settings
from agentport.core import (
    ChatRequest,
    EmbedRequest,
    ErrorEvent,
    PromptStart,
    StreamEvent,
)
from agentport.engines.base import Engine
from agentport.engines.llamacpp_grammar import grammar_compiles
from agentport.errors import InvalidRequestError, OverloadedError, PromptTooLongError
from agentport.planner.gguf_meta import read_shape
from agentport.planner.guard import AGENT_FLOOR, LoadPlan, LoadRequest, plan_load
from agentport.planner.probes import probe_device
from agentport.runtime.durations import parse_keep_alive
from agentport.runtime.generation import Consumer, emitter
from agentport.runtime.memory_watch import MemoryWatch, Probe, Resident, idle_by_age, load_budget
from agentport.runtime.model_defaults import ModelDefaults, apply_defaults, load_defaults
from agentport.store.embedded import register_embedded
from agentport.store.models import ModelEntry, ModelStore

log = logging.getLogger("agentport.runtime")

EngineFactory = Callable[[Path, Settings, LoadPlan], Engine]
TOOL_CALL_OPEN = "<tool_call>"
MEMORY_LOOK_SECONDS = 5.0


def llamacpp_factory(path: Path, settings: Settings, plan: LoadPlan) -> Engine:
    from agentport.engines.llamacpp import EngineOptions, LlamaCppEngine

    options = EngineOptions(
        n_ctx=plan.n_ctx,
        parallel=plan.parallel,
        kv_type=plan.kv_type,
        yarn_factor=plan.yarn_factor,
        threads=settings.threads,
        batch_size=settings.batch_size,
        flash_attention=settings.flash_attention,
        metadata_cache=settings.metadata_cache,
        prefix_cache_dir=settings.prefix_cache_dir,
        prefix_cache_bytes=settings.prefix_cache_disk,
        prefix_cache_min_tokens=settings.prefix_cache_min_tokens,
    )
    return LlamaCppEngine(path, options)


@dataclass
class LoadedModel:
    name: str
    entry: ModelEntry
    engine: Engine
    template: ChatTemplate
    family: str
    executor: ThreadPoolExecutor
    defaults: ModelDefaults
    load_seconds: float
    plan: LoadPlan
    loaded_at: float = field(default_factory=time.perf_counter)
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0  # requests generating or waiting for a sequence
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    expires_at: float | None = None  # monotonic deadline; None: never
    keep_alive: float | None = None
    closed: bool = False

    @property
    def busy(self) -> bool:
        return self.active > 0

    def begin(self) -> None:
        self.active += 1
        self.last_used = time.monotonic()
        self.idle.clear()

    def end(self) -> None:
        self.active -= 1
        self.last_used = time.monotonic()
        if self.active == 0:
            self.idle.set()

    def resident(self) -> Resident:
        estimate = self.plan.estimate
        return Resident(self.name, estimate.weights, estimate.total, self.busy, self.last_used)


def fill_in_the_middle(loaded: LoadedModel, prefix: str, suffix: str) -> str:
    markers = loaded.engine.info.fim_tokens
    if markers is None:
        raise InvalidRequestError(f"model '{loaded.name}' does not support suffix", "suffix")
    pre, suf, mid = markers
    return f"{pre}{prefix}{suf}{suffix}{mid}"


@dataclass
class Prepared:
    request: ChatRequest
    model: LoadedModel
    prompt: RenderedPrompt
    tokens: list[int]
    load_seconds: float = 0.0  # spent loading the model for this request
    release: Callable[[], object] | None = None  # gives back the place taken in the queue


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
        budget = load_budget(self.memory.look(), settings.memory_reserve, residents)
        request = LoadRequest(
            n_ctx=settings.context_length,
            parallel=settings.parallel or None,
            kv_type=None if settings.kv_type == "auto" else settings.kv_type,
            batch_size=settings.batch_size,
            flash_attention=settings.flash_attention,
            floor=min(AGENT_FLOOR, settings.context_length),
        )
        return plan_load(shape, request, budget, idle_by_age(residents))

    async def _load(self, key: str, entry: ModelEntry) -> LoadedModel:
        plan = await asyncio.to_thread(self.plan, entry)
        for name in plan.evict:
            log.info("unloading idle %s to make room for %s", name, key)
            await self.unload(name)
        for note in plan.notes:
            log.warning("%s: %s", key, note)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{key}")
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(
                executor, self.engine_factory, entry.model_path, self.settings, plan
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        info = engine.info
        defaults = await asyncio.to_thread(load_defaults, self.store, entry)
        source = defaults.template or info.chat_template
        template = ChatTemplate(source, info.bos_token, info.eos_token, model=key)
        loaded = LoadedModel(
            name=key,
            entry=entry,
            engine=engine,
            template=template,
            family=family_for(template.source, info.metadata, entry.config.get("parser")),
            executor=executor,
            defaults=defaults,
            load_seconds=time.perf_counter() - started,
            plan=plan,
            keep_alive=self.default_keep_alive,
        )
        loaded.idle.set()
        self._touch(loaded)
        scaling = f" ({info.rope_scaling})" if info.rope_scaling else ""
        log.info(
            "loaded %s in %.1fs: %d x %d tokens of context%s, KV %s, %d threads, plan %d MiB",
            key,
            loaded.load_seconds,
            info.parallel,
            info.n_ctx,
            scaling,
            info.kv_type,
            info.threads,
            plan.estimate.total >> 20,
        )
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
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(loaded.executor, loaded.engine.close)
        loaded.executor.shutdown(wait=False)
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
        started = time.perf_counter()
        loaded = await self.model(request.model)
        load_seconds = loaded.load_seconds if loaded.loaded_at >= started else 0.0
        if request.keep_alive is not None:
            loaded.keep_alive = parse_keep_alive(request.keep_alive)
        apply_defaults(request, loaded.defaults)
        if request.sampling.max_tokens is None and self.settings.default_max_tokens:
            request.sampling.max_tokens = self.settings.default_max_tokens  # no runaway answer
        prompt = self._prompt(request, loaded)
        tokens = await asyncio.to_thread(loaded.engine.tokenize, prompt.text)
        n_ctx = loaded.engine.info.n_ctx
        if not tokens:
            raise InvalidRequestError("the prompt is empty", "prompt")
        if check_length and len(tokens) >= n_ctx:
            raise PromptTooLongError(len(tokens), n_ctx)
        prepared = Prepared(request, loaded, prompt, tokens, load_seconds)
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

    def _prompt(self, request: ChatRequest, loaded: LoadedModel) -> RenderedPrompt:
        sampling = request.sampling
        family = prompt_family(loaded.family, loaded.template.supports_tools)
        sampling.grammar_triggers = []
        if request.output_format is not None:
            sampling.grammar = json_grammar(request.output_format.schema, grammar_compiles)
        else:
            sampling.grammar, sampling.grammar_triggers = self._forced_call_grammar(request, family)
        if request.prompt is None:
            named = sampling.grammar is None
            return render(request, loaded.template, loaded.name, named, loaded.family)
        if request.suffix is None:
            return RenderedPrompt(text=request.prompt)
        return RenderedPrompt(text=fill_in_the_middle(loaded, request.prompt, request.suffix))

    def _forced_call_grammar(
        self, request: ChatRequest, family: str
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """(grammar, lazy triggers) for the calls the request allows: a forced call (one, so
        it ends early) is constrained from its first token; with tool_choice auto, calls are
        constrained from their trigger on."""
        choice = request.tool_choice
        if not request.tools or choice.mode == "none" or request.prompt is not None:
            return None, []
        lazy = choice.mode == "auto"
        only = choice.name if choice.mode == "tool" else None
        grammar = calls_grammar(
            family, request.tools, only, lazy=lazy, parallel=lazy, compiles=grammar_compiles
        )
        if grammar is None or not lazy:
            return grammar, []
        return grammar, call_format(family).triggers()

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
        emit = emitter(asyncio.get_running_loop(), queue)
        try:
            loaded.engine.submit(prepared.tokens, prepared.request.sampling, emit, consumer.cancel)
            async for batch in consumer.run(queue):
                yield batch
        finally:
            consumer.cancel.set()
            if prepared.release is not None:
                prepared.release()

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
