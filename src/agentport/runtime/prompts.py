"""Prompt preparation for one request, as one blocking call made on a worker thread: the
model's defaults applied, the grammar and its lazy triggers chosen (an output format's JSON, or
the tool calls the request allows), the chat template rendered (or a raw prompt, or
fill-in-the-middle), the prompt tokenized and its length checked, and the grammar compiled by
the engine. `Prepared` carries the result on to generation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agentport.chat.control_text import segments
from agentport.chat.families import call_format
from agentport.chat.grammar import json_grammar
from agentport.chat.render import RenderedPrompt, render
from agentport.chat.tool_calls import calls_grammar, prompt_family
from agentport.core import ChatRequest
from agentport.engines.base import Constraint, Engine
from agentport.errors import InvalidRequestError, PromptTooLongError
from agentport.runtime.loader import LoadedModel
from agentport.runtime.model_defaults import apply_defaults


@dataclass
class Prepared:
    request: ChatRequest
    model: LoadedModel
    prompt: RenderedPrompt
    tokens: list[int]
    constraint: Constraint | None = None  # the compiled grammar, for a request that generates
    load_seconds: float = 0.0  # spent loading the model for this request
    release: Callable[[], object] | None = None  # gives back the place taken in the queue


def prepare_prompt(
    request: ChatRequest, loaded: LoadedModel, default_max_tokens: int, generating: bool
) -> tuple[RenderedPrompt, list[int], Constraint | None]:
    """(prompt, tokens, compiled grammar) for `request`; blocking. Only a request that will
    generate (`generating`) has its length checked and its grammar compiled."""
    apply_defaults(request, loaded.defaults)
    if request.sampling.max_tokens is None and default_max_tokens:
        request.sampling.max_tokens = default_max_tokens  # no runaway answer
    prompt = render_prompt(request, loaded)
    tokens = tokenize_prompt(loaded.engine, prompt.text)
    if not tokens:
        raise InvalidRequestError("the prompt is empty", "prompt")
    if not generating:
        return prompt, tokens, None
    n_ctx = loaded.engine.info.n_ctx
    if len(tokens) >= n_ctx:
        raise PromptTooLongError(len(tokens), n_ctx)
    return prompt, tokens, loaded.engine.constrain(request.sampling)


def tokenize_prompt(engine: Engine, text: str) -> list[int]:
    """The rendered prompt's tokens: its markup with control tokens parsed, the control-token
    strings marked inside content as plain text (chat/control_text.py)."""
    tokens: list[int] = []
    for index, (piece, markup) in enumerate(segments(text)):
        tokens += engine.tokenize(piece, special=markup, start=index == 0)
    return tokens


def render_prompt(request: ChatRequest, loaded: LoadedModel) -> RenderedPrompt:
    """The prompt's text; sets the request's grammar and lazy triggers first (the template
    names the forced tool call only when no grammar constrains it)."""
    sampling = request.sampling
    family = prompt_family(loaded.family, loaded.template.supports_tools)
    sampling.grammar_triggers = []
    if request.output_format is not None:
        compiles = loaded.engine.grammar_compiles
        sampling.grammar = json_grammar(request.output_format.schema, compiles)
    else:
        sampling.grammar, sampling.grammar_triggers = forced_call_grammar(request, family, loaded)
    if request.prompt is None:
        named = sampling.grammar is None
        return render(request, loaded.template, loaded.name, named, loaded.family)
    if request.suffix is None:
        return RenderedPrompt(text=request.prompt)
    return RenderedPrompt(text=fill_in_the_middle(loaded, request.prompt, request.suffix))


def forced_call_grammar(
    request: ChatRequest, family: str, loaded: LoadedModel
) -> tuple[str | None, list[tuple[str, str]]]:
    """(grammar, lazy triggers) for the calls the request allows: a forced call (one, so
    it ends early) is constrained from its first token; with tool_choice auto, calls are
    constrained from their trigger on."""
    choice = request.tool_choice
    if not request.tools or choice.mode == "none" or request.prompt is not None:
        return None, []
    lazy = choice.mode == "auto"
    only = choice.name if choice.mode == "tool" else None
    compiles = loaded.engine.grammar_compiles
    grammar = calls_grammar(
        family, request.tools, only, lazy=lazy, parallel=lazy, compiles=compiles
    )
    if grammar is None or not lazy:
        return grammar, []
    return grammar, call_format(family).triggers()


def fill_in_the_middle(loaded: LoadedModel, prefix: str, suffix: str) -> str:
    markers = loaded.engine.info.fim_tokens
    if markers is None:
        raise InvalidRequestError(f"model '{loaded.name}' does not support suffix", "suffix")
    pre, suf, mid = markers
    return f"{pre}{prefix}{suf}{suffix}{mid}"
