"""A model's own Jinja chat template, compiled in a sandbox and rendered within bounds.

Templates come from GGUF files and Modelfiles, which anyone can publish: they are the model
author's code. They run in jinja2's immutable sandbox, with the few helpers Hugging Face
templates expect (`raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII text), and
every render is bounded: a deadline (a timer raises in the rendering thread once it passes:
`RenderWatch`), Python's recursion limit (a macro calling itself), an output size checked as the
text is generated, and `*`, `+` and `**` refusing to build a value past that size or a power
past 10000. A template past a bound is a
TemplateLimitError naming the model and the bound, logged once per loaded template.
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentport.chat.control_text import ControlText
from agentport.errors import InvalidRequestError, TemplateLimitError

log = logging.getLogger("agentport.chat")

RENDER_SECONDS = 5.0  # a prompt of a million characters renders in well under a second
MAX_OUTPUT_CHARS = 32 * 1024 * 1024  # characters of prompt text, or of one value built

# Used when a GGUF carries no template at all.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateRaised(Exception):
    """The template itself called raise_exception (e.g. 'system message must be first')."""


class _PastBound(BaseException):  # noqa: N818 - not an error the template may catch
    """A render bound was passed. A BaseException, so that no `except Exception` on the way
    (in jinja2's runtime or the sandbox) swallows it."""

    def __init__(self, bound: str) -> None:
        super().__init__(bound)
        self.bound = bound


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*`, `+` and `**` refusing to build huge values, and calls
    and padding filters refusing a width past the size bound (`'x'.ljust(10**10)`)."""

    intercepted_binops = frozenset(("*", "+", "**"))
    SIZED_FILTERS = ("center", "indent", "wordwrap", "truncate")

    def __init__(self, max_chars: int, **options: Any) -> None:
        super().__init__(**options)
        self.max_chars = max_chars
        for name in self.SIZED_FILTERS:
            self.filters[name] = self._sized(self.filters[name])

    def _check_sizes(self, args: tuple, kwargs: dict) -> None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > self.max_chars:
                raise _PastBound(f"asked for a width past {self.max_chars} characters")

    def _sized(self, function: Any) -> Any:
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._check_sizes(args, kwargs)
            return function(*args, **kwargs)

        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self._check_sizes(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any):
        if operator == "**" and _huge_power(left, right):
            raise _PastBound("raised a number to a power past 10000")
        if operator != "**" and _result_length(operator, left, right) > self.max_chars:
            raise _PastBound(f"built a value past {self.max_chars} characters")
        return super().call_binop(context, operator, left, right)


def _huge_power(base: Any, exponent: Any) -> bool:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (base, exponent))
    return numbers and abs(exponent) > 10_000 and abs(base) > 1


def _result_length(operator: str, left: Any, right: Any) -> int:
    sized = (str, list, tuple)
    if operator == "+":
        both = isinstance(left, sized) and isinstance(right, sized)
        return len(left) + len(right) if both else 0
    sequence, count = (left, right) if isinstance(left, sized) else (right, left)
    if isinstance(sequence, sized) and isinstance(count, int):
        return len(sequence) * count
    return 0


class _TimedOut(_PastBound):  # noqa: N818
    """Raised in the rendering thread by its RenderWatch (constructed without arguments)."""

    def __init__(self) -> None:
        super().__init__("ran past its time limit")


class RenderWatch:
    """Stops one render in the thread that runs it once `seconds` pass: the watchdog raises
    _TimedOut there (at its next bytecode), unless `stop` came first. Costs nothing per line
    rendered, unlike a trace function (which made a 1 MB ChatML render 19 times slower)."""

    def __init__(self, seconds: float) -> None:
        self.thread_id = threading.get_ident()
        self.deadline = time.monotonic() + seconds
        self.fired = False
        _WATCHDOG.add(self)

    def stop(self) -> None:
        """Disarm; a _TimedOut set but not yet raised is withdrawn."""
        _WATCHDOG.remove(self)


class _Watchdog:
    """One daemon thread for the process, started at the first render, that fires each
    RenderWatch at its deadline."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.watches: set[RenderWatch] = set()
        self.thread: threading.Thread | None = None

    def add(self, watch: RenderWatch) -> None:
        with self.condition:
            self.watches.add(watch)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="agentport-template-watchdog", daemon=True
                )
                self.thread.start()
            self.condition.notify()

    def remove(self, watch: RenderWatch) -> None:
        with self.condition:
            self.watches.discard(watch)
            if watch.fired:
                _set_async_exception(watch.thread_id, None)

    def _run(self) -> None:
        with self.condition:
            while True:
                now = time.monotonic()
                for watch in [w for w in self.watches if w.deadline <= now]:
                    self.watches.discard(watch)
                    watch.fired = True
                    _set_async_exception(watch.thread_id, _TimedOut)
                next_deadline = min((w.deadline for w in self.watches), default=None)
                self.condition.wait(None if next_deadline is None else next_deadline - now)


_WATCHDOG = _Watchdog()


def _set_async_exception(thread_id: int, error: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(error) if error else None
    )


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """Renders a list of template messages (dicts) to the prompt text."""

    def __init__(
        self,
        source: str | None,
        bos_token: str = "",
        eos_token: str = "",
        model: str = "unnamed",
        seconds: float = RENDER_SECONDS,
        max_chars: int = MAX_OUTPUT_CHARS,
        control_texts: Iterable[str] = (),
    ) -> None:
        self.source = source or CHATML_TEMPLATE
        self.control = ControlText(control_texts)  # marks control tokens' strings in content
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model = model
        self.seconds = seconds
        self.max_chars = max_chars
        self.limit_logged = False
        env = BoundedSandbox(
            max_chars, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(f"the model's chat template does not compile: {exc}") from exc

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.source

    @property
    def supports_thinking_switch(self) -> bool:
        return "enable_thinking" in self.source

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        """Render (control-token strings in the content marked, see chat/control_text.py);
        raises TemplateRaised when the template rejects the conversation and
        TemplateLimitError when it runs past a bound."""
        variables = {
            "messages": self.control.protect(messages),
            "tools": self.control.protect(tools) or None,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **extra,
        }
        try:
            return self._bounded(self._template.generate(**variables))
        except _TimedOut:
            raise self._limit_error(f"ran longer than {self.seconds:g} s") from None
        except _PastBound as exc:
            raise self._limit_error(exc.bound) from None
        except RecursionError:
            raise self._limit_error("recursed past Python's recursion limit") from None
        except TemplateRaised:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateRaised(str(exc)) from exc
        except (TypeError, KeyError, AttributeError, IndexError) as exc:
            raise TemplateRaised(f"{type(exc).__name__}: {exc}") from exc

    def _bounded(self, pieces: Iterator[str]) -> str:
        """The generated text, within the output size, under a RenderWatch of this thread."""
        out: list[str] = []
        size = 0
        watch = RenderWatch(self.seconds)
        try:
            for piece in pieces:
                size += len(piece)
                if size > self.max_chars:
                    raise _PastBound(f"wrote more than {self.max_chars} characters")
                out.append(piece)
        finally:
            watch.stop()
        return "".join(out)

    def _limit_error(self, bound: str) -> TemplateLimitError:
        if not self.limit_logged:
            self.limit_logged = True
            log.error("the chat template of model %r stopped: it %s", self.model, bound)
        return TemplateLimitError(self.model, bound)
