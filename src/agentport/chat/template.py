"""A model's own Jinja chat template, compiled in a sandbox.

Templates come from GGUF files, which anyone can publish: they run in jinja2's immutable
sandbox, with the few helpers Hugging Face templates expect (`raise_exception`,
`strftime_now`, a `tojson` that keeps non-ASCII text).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentport.errors import InvalidRequestError

# Used when a GGUF carries no template at all.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateRaised(Exception):
    """The template itself called raise_exception (e.g. 'system message must be first')."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """Renders a list of template messages (dicts) to the prompt text."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML_TEMPLATE
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined
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
        """Render; raises TemplateRaised when the template rejects the conversation."""
        try:
            return self._template.render(
                messages=messages,
                tools=tools or None,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except TemplateRaised:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateRaised(str(exc)) from exc
        except (TypeError, KeyError, AttributeError, IndexError) as exc:
            raise TemplateRaised(f"{type(exc).__name__}: {exc}") from exc
