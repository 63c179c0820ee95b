"""Loading and unloading one model's engine under its memory plan: `LoadedModel` (the engine,
its chat template, family and defaults, its worker thread, its use and keep-alive) and the
`EngineFactory` that builds an engine from a model file, settings and a plan."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agentport.chat.families import family_for
from agentport.chat.template import ChatTemplate
from agentport.config import Settings
from agentport.engines.base import Engine
from agentport.planner.guard import LoadPlan
from agentport.planner.plan import Resident
from agentport.runtime.model_defaults import ModelDefaults, load_defaults
from agentport.store.models import ModelEntry, ModelStore

log = logging.getLogger("agentport.runtime")

EngineFactory = Callable[[Path, Settings, LoadPlan], Engine]


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


async def load_model(
    key: str,
    entry: ModelEntry,
    plan: LoadPlan,
    settings: Settings,
    store: ModelStore,
    factory: EngineFactory,
) -> LoadedModel:
    """Build the engine for `entry` on a worker thread of its own, which stays the model's."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{key}")
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        engine = await loop.run_in_executor(executor, factory, entry.model_path, settings, plan)
    except BaseException:
        executor.shutdown(wait=False)
        raise
    info = engine.info
    defaults = await asyncio.to_thread(load_defaults, store, entry)
    source = defaults.template or info.chat_template
    template = ChatTemplate(
        source, info.bos_token, info.eos_token, model=key, control_texts=info.control_texts
    )
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
    )
    loaded.idle.set()
    _log_loaded(loaded)
    return loaded


def _log_loaded(loaded: LoadedModel) -> None:
    info = loaded.engine.info
    scaling = f" ({info.rope_scaling})" if info.rope_scaling else ""
    log.info(
        "loaded %s in %.1fs: %d x %d tokens of context%s, KV %s, %d threads, plan %d MiB",
        loaded.name,
        loaded.load_seconds,
        info.parallel,
        info.n_ctx,
        scaling,
        info.kv_type,
        info.threads,
        loaded.plan.estimate.total >> 20,
    )


async def close_model(loaded: LoadedModel) -> None:
    """Close the engine on its own worker thread (after any work queued there), then the
    thread."""
    loaded.closed = True
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(loaded.executor, loaded.engine.close)
    loaded.executor.shutdown(wait=False)
