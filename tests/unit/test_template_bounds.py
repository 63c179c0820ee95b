"""A chat template is the model author's code: one that loops, recurses or builds huge text
stops fast with a TemplateLimitError naming the model and the bound (logged once), and the
bounds leave normal renders alone."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentport.chat.template import CHATML_TEMPLATE, ChatTemplate
from agentport.errors import InvalidRequestError, TemplateLimitError

HOSTILE = {
    "nested loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "longer than 0.5 s",
    ),
    "recursive macro": (
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "recursion limit",
    ),
    "doubling macro": (
        "{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}"
        "{{ f(0) }}",
        "longer than 0.5 s",
    ),
    "string multiplication": ("{{ 'a' * 10000000000 }}", "1000000 characters"),
    "string doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s }}",
        "1000000 characters",
    ),
    "huge power": ("{{ 10 ** 100000000 }}", "power"),
    "long output": ("{% for a in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "wrote more"),
    "padding method": ("{{ 'x'.ljust(10 ** 10) }}", "width"),
    "padding filter": ("{{ 'x' | center(10 ** 10) }}", "width"),
    "indent filter": ("{{ 'x\ny' | indent(10 ** 10) }}", "width"),
}


def bounded(source: str) -> ChatTemplate:
    return ChatTemplate(source, model="loopy", seconds=0.5, max_chars=1_000_000)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_fails_fast_naming_model_and_bound(name):
    source, bound = HOSTILE[name]
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError) as caught:
        bounded(source).render([{"role": "user", "content": "hi"}])
    assert time.perf_counter() - started < 2.0
    assert isinstance(caught.value, InvalidRequestError)
    assert "loopy" in caught.value.message and bound in caught.value.bound


def test_the_limit_is_logged_once_per_template(caplog):
    template = bounded(HOSTILE["recursive macro"][0])
    with caplog.at_level(logging.ERROR, logger="agentport.chat"):
        for _ in range(3):
            with pytest.raises(TemplateLimitError):
                template.render([])
    assert len([r for r in caplog.records if "loopy" in r.getMessage()]) == 1


def test_a_render_that_ends_in_time_leaves_nothing_behind():
    template = ChatTemplate(CHATML_TEMPLATE, seconds=0.05)
    messages = [{"role": "user", "content": "hello"}]
    for _ in range(50):
        assert template.render(messages).startswith("<|im_start|>user")
    time.sleep(0.1)  # past every deadline: no late interruption arrives in this thread
    assert sum(range(100000)) == 4999950000


def test_renders_in_worker_threads_are_bounded_separately():
    loop = bounded(HOSTILE["nested loops"][0])
    fine = ChatTemplate(CHATML_TEMPLATE, seconds=0.5)
    messages = [{"role": "user", "content": "hello"}]

    def looping() -> str:
        with pytest.raises(TemplateLimitError):
            loop.render(messages)
        return "stopped"

    with ThreadPoolExecutor(2) as pool:
        stopped = pool.submit(looping)
        rendered = [pool.submit(fine.render, messages) for _ in range(20)]
        assert stopped.result(timeout=5) == "stopped"
        assert all(r.result(timeout=5).endswith("<|im_start|>assistant\n") for r in rendered)
