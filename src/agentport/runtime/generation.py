"""One generation as seen from the event loop: the engine's items in, core events out (stop
sequences, tool calls, thinking, usage).

The engine's decode thread files each item in the event loop's `Mailbox` and delivers them all
with one `call_soon_threadsafe` per decode step (for every sequence at once); the consumer drains
everything queued at once, so the server writes one chunk per wake-up.
Errors cross the queue as values and become ErrorEvents on the consumer side.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from agentport.chat.families import OutputParser
from agentport.chat.stream_text import StopMatcher
from agentport.core import (
    Done,
    ErrorEvent,
    FinishReason,
    Ping,
    StreamEvent,
    Timings,
    Usage,
)
from agentport.engines.base import Finished, Prefilled
from agentport.errors import AgentportError

log = logging.getLogger("agentport.runtime")


class Mailbox:
    """Carries engine items from decode threads to one event loop: each generation's `emit`
    (from `emitter`) only files its item; the engine calls `deliver` once at the end of each
    decode step, which hands everything filed to the loop with one `call_soon_threadsafe`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()  # several models' decode threads may share the mailbox
        self._filed: list[tuple[Callable[[object], None], object]] = []

    def emitter(self, queue: asyncio.Queue) -> Callable[[object], None]:
        """The engine's `emit` for one generation, whose items go onto `queue`."""
        put, lock, mailbox = queue.put_nowait, self._lock, self

        def emit(item: object) -> None:
            with lock:
                mailbox._filed.append((put, item))

        return emit

    def deliver(self) -> None:
        """Hand what was filed to the event loop, in one wake-up (none when nothing was)."""
        with self._lock:
            filed, self._filed = self._filed, []
        if not filed:
            return
        try:  # noqa: SIM105 - once per step: cheaper than contextlib.suppress
            self.loop.call_soon_threadsafe(_hand_over, filed)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass


def _hand_over(filed: list[tuple[Callable[[object], None], object]]) -> None:
    for put, item in filed:
        put(item)


@dataclass
class Consumer:
    """Engine items -> core event batches, on the event loop."""

    parser: OutputParser
    stops: StopMatcher
    client_stops: set[str]
    cancel: threading.Event
    ping_interval: float
    timings: Timings = field(default_factory=Timings)
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.perf_counter)
    prefilled: bool = False
    stopped: bool = False

    async def run(self, queue: asyncio.Queue) -> AsyncIterator[list[StreamEvent]]:
        while True:
            item = await self._next(queue)
            if item is None:
                yield [Ping()]
                continue
            items = [item]
            while not queue.empty():
                items.append(queue.get_nowait())
            events, finished = self._handle(items)
            if events:
                yield events
            if finished:
                return

    async def _next(self, queue: asyncio.Queue):
        if self.prefilled:
            return await queue.get()
        try:
            return await asyncio.wait_for(queue.get(), self.ping_interval)
        except asyncio.TimeoutError:
            return None

    def _handle(self, items: list) -> tuple[list[StreamEvent], bool]:
        events: list[StreamEvent] = []
        for item in items:
            if type(item) is str:
                self._text(item, events)
            elif isinstance(item, Prefilled):
                self.prefilled = True
                self.usage.input_tokens = item.prompt_tokens
                self.usage.cached_tokens = item.cached_tokens
                self.timings.prompt_eval = item.seconds
                self.timings.queue += item.queued
            elif isinstance(item, Finished):
                events.append(self._finish(item, events))
                return events, True
            elif isinstance(item, AgentportError):
                events.append(ErrorEvent(item))
                return events, True
        return events, False

    def _text(self, text: str, events: list[StreamEvent]) -> None:
        if self.stopped:
            return
        text = self.stops.feed(text)
        if text:
            events.extend(self.parser.feed(text))
        if self.stops.matched is not None:
            self.stopped = True
            self.cancel.set()

    def _finish(self, finished: Finished, events: list[StreamEvent]) -> Done:
        if not self.stopped:
            rest = self.stops.flush()
            if rest:
                events.extend(self.parser.feed(rest))
        events.extend(self.parser.finish())
        self.usage.output_tokens = finished.output_tokens
        self.timings.eval = finished.seconds
        self.timings.total = time.perf_counter() - self.started
        reason, sequence = self._reason(finished)
        self._log(reason)
        return Done(reason, self.usage, self.timings, sequence)

    def _log(self, reason: FinishReason) -> None:
        usage, timings = self.usage, self.timings
        rate = usage.output_tokens / timings.eval if timings.eval > 0 else 0.0
        log.info(
            "prompt %d tokens (%d cached) in %.2fs; %d tokens at %.1f/s; %s",
            usage.input_tokens,
            usage.cached_tokens,
            timings.prompt_eval,
            usage.output_tokens,
            rate,
            reason.value,
        )

    def _reason(self, finished: Finished) -> tuple[FinishReason, str | None]:
        matched = self.stops.matched
        if matched is not None and matched in self.client_stops:
            return FinishReason.STOP_SEQUENCE, matched
        if finished.reason == "length" and matched is None:
            return FinishReason.LENGTH, None
        if finished.reason == "cancelled" and matched is None:
            return FinishReason.CANCELLED, None
        if self.parser.tool_calls:
            return FinishReason.TOOL_CALLS, None
        return FinishReason.STOP, None
