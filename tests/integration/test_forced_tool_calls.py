"""Constrained tool calls on the real engine and the embedded model.

The proof: with agent-like tools (Claude Code's shapes, and a few made up here so the test covers
schemas the grammar code was not tuned on), at temperature 1.0 over 20 seeds, a forced call
(Anthropic `any`, OpenAI `required`, and on /api/chat agentport's `tool_choice` extension) is a
call to an existing tool whose input validates against its schema, streamed or not; a call cut
by max_tokens is text with stop_reason max_tokens. Beside it: every family's call grammar is
accepted token by token by llama.cpp on a hand-written call, and the real model writes valid
calls under each family's grammar; a lazy grammar stays dormant until its trigger.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonschema
import pytest

from agentport.chat.families import call_format, parser_for
from agentport.chat.render import render
from agentport.chat.template import ChatTemplate
from agentport.chat.tool_calls import calls_grammar
from agentport.core import (
    ChatRequest,
    Message,
    SamplingParams,
    TextPart,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolSpec,
)
from agentport.engines.base import Finished
from agentport.engines.llamacpp import EngineOptions, LlamaCppEngine
from agentport.engines.llamacpp_grammar import GrammarGate, grammar_compiles

SEEDS = range(20)
MAX_TOKENS = 200
HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "anything"}
SYSTEM = "You are a coding agent. Use the tools to work on the user's repository."
PROMPT = "The test in tests/test_app.py fails. Find out why and fix it."

STRING = {"type": "string"}
SCHEMAS: dict[str, dict] = {
    "Read": {
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "description": "Absolute path of the file"},
            "offset": {"type": "number", "description": "Line to start from"},
            "limit": {"type": "number", "description": "Number of lines"},
        },
        "required": ["file_path"],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    },
    "Edit": {
        "type": "object",
        "properties": {
            "file_path": STRING,
            "old_string": STRING,
            "new_string": STRING,
            "replace_all": {"type": "boolean", "default": False},
        },
        "required": ["file_path", "old_string", "new_string"],
        "additionalProperties": False,
    },
    "MultiEdit": {
        "type": "object",
        "properties": {
            "file_path": STRING,
            "edits": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "old_string": STRING,
                        "new_string": STRING,
                        "replace_all": {"type": "boolean"},
                    },
                    "required": ["old_string", "new_string"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["file_path", "edits"],
    },
    "Bash": {
        "type": "object",
        "properties": {
            "command": STRING,
            "timeout": {"type": "number", "maximum": 600000},
            "description": STRING,
        },
        "required": ["command"],
    },
    "Grep": {
        "type": "object",
        "properties": {
            "pattern": STRING,
            "path": STRING,
            "glob": STRING,
            "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
            "-i": {"type": "boolean"},
            "head_limit": {"type": "integer", "minimum": 1},
        },
        "required": ["pattern", "output_mode"],
    },
    "TodoWrite": {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "minLength": 1},
                        "status": {"enum": ["pending", "in_progress", "completed"]},
                        "id": STRING,
                    },
                    "required": ["content", "status", "id"],
                },
            }
        },
        "required": ["todos"],
    },
    "WebFetch": {
        "type": "object",
        "properties": {"url": {"type": "string", "format": "uri"}, "prompt": STRING},
        "required": ["url", "prompt"],
    },
    "Notebook": {  # anyOf and nullable fields
        "type": "object",
        "properties": {
            "cell": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]},
            "source": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["code", "markdown"], "nullable": True},
        },
        "required": ["cell", "source"],
    },
    "Task": {  # a $ref, recursive
        "type": "object",
        "$defs": {
            "step": {
                "type": "object",
                "properties": {
                    "title": STRING,
                    "substeps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "maxItems": 2},
                },
                "required": ["title"],
            }
        },
        "properties": {"plan": {"$ref": "#/$defs/step"}, "agent": {"const": "general"}},
        "required": ["plan", "agent"],
    },
    # Made up here, not used while writing the grammar code:
    "CreateIssue": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 80},
            "priority": {"type": "integer", "minimum": 1, "maximum": 5},
            "labels": {"type": "array", "items": STRING, "maxItems": 3},
            "due": {"type": "string", "format": "date"},
            "assignee": {"oneOf": [{"type": "null"}, {"type": "string", "pattern": "^@[a-z]+$"}]},
        },
        "required": ["title", "priority", "assignee"],
    },
    "SetConfig": {
        "type": "object",
        "properties": {
            "key": {"type": "string", "pattern": "^[a-z]+(\\.[a-z_]+){0,3}$"},
            "value": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}]},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "scope": {"allOf": [{"type": "string"}, {"enum": ["user", "project"]}]},
        },
        "required": ["key", "value", "scope"],
    },
    "Schedule": {
        "type": "object",
        "properties": {
            "job": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": "[A-Za-z][\\w-]*"},
                    "retries": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
                    "ratio": {"type": "number", "minimum": 0.5, "maximum": 2.5},
                    "window": {
                        "type": "array",
                        "prefixItems": [{"type": "string", "format": "time"}, {"type": "integer"}],
                        "items": False,
                    },
                },
                "required": ["name", "retries", "ratio"],
                "additionalProperties": False,
            }
        },
        "required": ["job"],
    },
}
DESCRIPTIONS = {
    "Read": "Read a file.",
    "Edit": "Replace text in a file.",
    "MultiEdit": "Several replacements in one file.",
    "Bash": "Run a shell command.",
    "Grep": "Search file contents.",
    "TodoWrite": "Write the todo list.",
    "WebFetch": "Fetch a web page and answer a prompt about it.",
    "Notebook": "Edit a notebook cell.",
    "Task": "Plan a task.",
    "CreateIssue": "Open an issue in the tracker.",
    "SetConfig": "Set a configuration value.",
    "Schedule": "Schedule a background job.",
}
TOOLS = [ToolSpec(name, DESCRIPTIONS[name], schema) for name, schema in SCHEMAS.items()]


def check_call(name: str, arguments: object) -> None:
    assert name in SCHEMAS, f"unknown tool {name!r}"
    schema = SCHEMAS[name]
    jsonschema.validators.validator_for(schema)(schema).validate(arguments)


# --- the three dialects -------------------------------------------------------------------------


def anthropic_calls(api: httpx.Client, seed: int, stream: bool) -> list[tuple[str, object]]:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": MAX_TOKENS,
        "temperature": 1.0,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [
            {"name": n, "description": DESCRIPTIONS[n], "input_schema": s}
            for n, s in SCHEMAS.items()
        ],
        "tool_choice": {"type": "any"},
        "stream": stream,
        "seed": seed,
    }
    response = api.post("/v1/messages", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    if not stream:
        message = response.json()
        assert message["stop_reason"] == "tool_use", message
        return [(b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"]
    calls: dict[int, list] = {}
    stop_reason = None
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        if data["type"] == "content_block_start" and data["content_block"]["type"] == "tool_use":
            calls[data["index"]] = [data["content_block"]["name"], ""]
        elif data["type"] == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            calls[data["index"]][1] += data["delta"]["partial_json"]
        elif data["type"] == "message_delta":
            stop_reason = data["delta"]["stop_reason"]
    assert stop_reason == "tool_use", response.text
    return [(name, json.loads(text or "{}")) for name, text in calls.values()]


def openai_calls(api: httpx.Client, seed: int, stream: bool) -> list[tuple[str, object]]:
    body = {
        "model": "smollm2:135m",
        "max_tokens": MAX_TOKENS,
        "temperature": 1.0,
        "seed": seed,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "tools": [
            {
                "type": "function",
                "function": {"name": n, "description": DESCRIPTIONS[n], "parameters": s},
            }
            for n, s in SCHEMAS.items()
        ],
        "tool_choice": "required",
        "stream": stream,
    }
    response = api.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if not stream:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls", choice
        calls = choice["message"]["tool_calls"]
        return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
    found: dict[int, list] = {}
    finish = None
    for line in response.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        for choice in json.loads(line[6:]).get("choices", []):
            finish = choice.get("finish_reason") or finish
            for delta in choice["delta"].get("tool_calls") or []:
                call = found.setdefault(delta["index"], ["", ""])
                call[0] += delta.get("function", {}).get("name") or ""
                call[1] += delta.get("function", {}).get("arguments") or ""
    assert finish == "tool_calls", response.text
    return [(name, json.loads(arguments)) for name, arguments in found.values()]


def ollama_calls(api: httpx.Client, seed: int, stream: bool) -> list[tuple[str, object]]:
    body = {
        "model": "smollm2:135m",
        "options": {"temperature": 1.0, "seed": seed, "num_predict": MAX_TOKENS},
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "tools": [
            {
                "type": "function",
                "function": {"name": n, "description": DESCRIPTIONS[n], "parameters": s},
            }
            for n, s in SCHEMAS.items()
        ],
        "tool_choice": "required",  # agentport's extension: Ollama's API has no tool_choice
        "stream": stream,
    }
    response = api.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    calls = [c for line in lines for c in line["message"].get("tool_calls") or []]
    return [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


def run_seeds(api: httpx.Client, ask) -> list[list[tuple[str, object]]]:
    jobs = [(seed, seed % 2 == 1) for seed in SEEDS]  # odd seeds stream
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda job: ask(api, *job), jobs))


@pytest.mark.parametrize(
    "ask", [anthropic_calls, openai_calls, ollama_calls], ids=["anthropic", "openai", "ollama"]
)
def test_forced_calls_are_always_valid(api, ask):
    answers = run_seeds(api, ask)
    for calls in answers:
        assert calls, "a forced call produced no call"
        for name, arguments in calls:
            check_call(name, arguments)
    print(f"\n{ask.__name__}: {len(answers)}/{len(answers)} valid forced calls")


def test_a_call_cut_by_max_tokens_is_text_with_max_tokens(api):
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 6,
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [{"name": "Bash", "input_schema": SCHEMAS["Bash"]}],
        "tool_choice": {"type": "tool", "name": "Bash"},
    }
    message = api.post("/v1/messages", json=body, headers=HEADERS).json()
    assert message["stop_reason"] == "max_tokens", message
    assert [block["type"] for block in message["content"]] == ["text"], message
    streamed = api.post("/v1/messages", json={**body, "stream": True}, headers=HEADERS)
    assert streamed.status_code == 200
    assert '"stop_reason":"max_tokens"' in streamed.text.replace(" ", "")


# --- every family's grammar, on the engine ------------------------------------------------------

FAMILY_TOOLS = [t for t in TOOLS if t.name in ("Read", "Grep", "TodoWrite", "Notebook")]
WRITTEN = {  # one hand-written call to Read in each family's syntax, after its forced prefix
    "hermes": '{"name": "Read", "arguments": {"file_path": "/a.py", "offset": 3}}\n</tool_call>',
    "qwen3_coder": "<function=Read>\n<parameter=file_path>\n/a.py\n</parameter>\n"
    "<parameter=offset>\n3\n</parameter>\n</function>\n</tool_call>",
    "llama3": '{"name": "Read", "parameters": {"file_path": "/a.py", "offset": 3}}',
    "mistral": ' [{"name": "Read", "arguments": {"file_path": "/a.py", "offset": 3}}]',
    "deepseek": "<｜tool▁call▁begin｜>function<｜tool▁sep｜>Read\n```json\n"
    '{"file_path": "/a.py", "offset": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    "generic": '{"name": "Read", "arguments": {"file_path": "/a.py", "offset": 3}}',
}


@pytest.fixture(scope="module")
def engine(gguf: Path):
    engine = LlamaCppEngine(gguf, EngineOptions(n_ctx=4096, parallel=2, threads=2))
    yield engine
    engine.close()


def gate_for(engine, grammar: str, triggers=()) -> GrammarGate:
    params = SamplingParams(grammar=grammar, grammar_triggers=list(triggers))
    gate = engine.gate(params)
    assert gate is not None
    return gate


def feed(engine, gate: GrammarGate, text: str) -> None:
    """Let `text` through the gate token by token, as if sampled; each must be allowed."""
    for token in engine.tokenize(text)[int(engine._add_bos) :]:
        assert gate.allows(token), (text, engine._token_text(token))
        assert gate.choose(None, token, -1) == token


def eos(engine) -> int:
    return engine.lib.llama_vocab_eos(engine.vocab)


@pytest.mark.parametrize("family", sorted(WRITTEN))
def test_each_family_grammar_accepts_a_written_call(engine, family):
    fmt = call_format(family)
    gate = gate_for(engine, calls_grammar(family, FAMILY_TOOLS, compiles=grammar_compiles))
    feed(engine, gate, WRITTEN[family])
    assert gate.allows(eos(engine))  # complete
    gate.free()
    lazy = gate_for(
        engine,
        calls_grammar(family, FAMILY_TOOLS, lazy=True, compiles=grammar_compiles),
        fmt.triggers(),
    )
    feed(engine, lazy, "I will read it." if fmt.anywhere else "")
    assert not lazy.constraining
    feed(engine, lazy, fmt.forced_prefix + WRITTEN[family])
    assert lazy.allows(eos(engine))
    lazy.free()
    bare = gate_for(
        engine,
        calls_grammar(family, FAMILY_TOOLS, lazy=True, compiles=grammar_compiles),
        fmt.triggers(),
    )
    feed(engine, bare, WRITTEN["generic"][:7])  # `{"name"`: every parser reads a bare call
    assert bare.constraining
    feed(engine, bare, WRITTEN["generic" if family != "llama3" else "llama3"][7:])
    assert bare.allows(eos(engine))
    bare.free()


def generate(engine, tokens: list[int], params: SamplingParams) -> tuple[str, Finished]:
    done: queue.Queue = queue.Queue()
    pieces: list[str] = []

    def emit(item) -> None:
        if isinstance(item, str):
            pieces.append(item)
        elif isinstance(item, (Finished, Exception)):
            done.put(item)

    engine.submit(tokens, params, emit, threading.Event())
    finished = done.get(timeout=600)
    assert isinstance(finished, Finished), finished
    return "".join(pieces), finished


def parsed_calls(family: str, text: str, tools=FAMILY_TOOLS) -> list[tuple[str, object]]:
    parser = parser_for(family, tools)
    events = parser.feed(text) + parser.finish()
    names = {e.index: e.name for e in events if isinstance(e, ToolCallStart)}
    arguments: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            arguments[event.index] = arguments.get(event.index, "") + event.arguments
    return [(names[i], json.loads(arguments.get(i) or "{}")) for i in names]


@pytest.mark.parametrize("family", sorted(WRITTEN))
def test_the_model_writes_valid_calls_under_every_family_grammar(engine, family):
    """The real model, forced into each family's syntax (the prompt documents Hermes' format,
    so this is the grammar at work), and that family's parser reading the result."""
    fmt = call_format(family)
    request = ChatRequest(
        model="m",
        messages=[Message("system", [TextPart(SYSTEM)]), Message("user", [TextPart(PROMPT)])],
        tools=FAMILY_TOOLS,
        tool_choice=ToolChoice("any"),
    )
    prompt = render(request, ChatTemplate(engine.info.chat_template), "m", name_in_prefix=False)
    text = prompt.text[: len(prompt.text) - len(prompt.forced_prefix)] + fmt.forced_prefix
    grammar = calls_grammar(family, FAMILY_TOOLS, compiles=grammar_compiles)
    for seed in range(3):
        params = SamplingParams(temperature=1.0, seed=seed, max_tokens=400, grammar=grammar)
        output, finished = generate(engine, engine.tokenize(text), params)
        assert finished.reason == "stop", (family, output)
        calls = parsed_calls(family, fmt.forced_prefix + output)
        assert calls, (family, output)
        for name, arguments in calls:
            check_call(name, arguments)


def test_a_lazy_grammar_sleeps_until_its_trigger(engine):
    fmt = call_format("hermes")
    gate = gate_for(
        engine,
        calls_grammar("hermes", FAMILY_TOOLS, lazy=True, compiles=grammar_compiles),
        fmt.triggers(),
    )
    hello = engine.tokenize("Hello")[int(engine._add_bos) :][0]
    feed(engine, gate, "Sure. " * 200)  # past a fresh start of the trigger search
    assert not gate.constraining and gate.allows(hello)
    feed(engine, gate, "<tool_call>")
    assert gate.constraining and not gate.allows(hello) and not gate.allows(eos(engine))
    feed(engine, gate, "\n" + WRITTEN["hermes"])
    assert gate.allows(eos(engine))
    gate.free()


def test_a_trigger_at_the_start_only_expires(engine):
    fmt = call_format("generic")
    gate = gate_for(
        engine,
        calls_grammar("generic", FAMILY_TOOLS, lazy=True, compiles=grammar_compiles),
        fmt.triggers(),
    )
    feed(engine, gate, "Sure. " * 200)
    assert gate.sampler is None  # nothing left to wait for: every token goes through
    gate.free()


def test_a_special_token_triggers_a_lazy_grammar(engine):
    grammar = 'root ::= "<|im_start|>" "yes"'
    gate = gate_for(engine, grammar, [("<|im_start|>", "")])
    no = engine.tokenize("no")[int(engine._add_bos) :][0]
    assert gate.allows(no)
    feed(engine, gate, "no <|im_start|>")
    assert not gate.allows(no)
    feed(engine, gate, "yes")
    gate.free()


def test_an_uncompilable_grammar_means_no_gate(engine):
    assert engine.gate(SamplingParams(grammar="root ::= nowhere")) is None
    assert engine.gate(SamplingParams()) is None


@pytest.mark.parametrize("family", ["hermes", "qwen3_coder"])
def test_a_call_near_the_end_of_its_budget_is_steered_to_a_close(engine, family):
    tools = [t for t in TOOLS if t.name in ("TodoWrite", "Edit")]
    fmt = call_format(family)
    request = ChatRequest(
        model="m",
        messages=[Message("user", [TextPart("Write a long, detailed todo list for a rewrite.")])],
        tools=tools,
        tool_choice=ToolChoice("tool", "TodoWrite" if family == "hermes" else "Edit"),
    )
    prompt = render(request, ChatTemplate(engine.info.chat_template), "m", name_in_prefix=False)
    text = prompt.text[: len(prompt.text) - len(prompt.forced_prefix)] + fmt.forced_prefix
    grammar = calls_grammar(
        family, tools, only=request.tool_choice.name, parallel=False, compiles=grammar_compiles
    )
    budget = 60 if family == "hermes" else 120  # XML tags take many of this model's tokens
    for seed in range(4):
        params = SamplingParams(temperature=1.5, seed=seed, max_tokens=budget, grammar=grammar)
        output, finished = generate(engine, engine.tokenize(text), params)
        assert finished.reason == "stop", output
        calls = parsed_calls(family, fmt.forced_prefix + output, tools)
        assert [name for name, _ in calls] == [request.tool_choice.name], output
        check_call(*calls[0])


def test_a_fenced_bare_call_is_under_the_lazy_grammar(engine):
    fmt = call_format("hermes")
    gate = gate_for(
        engine,
        calls_grammar("hermes", FAMILY_TOOLS, lazy=True, compiles=grammar_compiles),
        fmt.triggers(),
    )
    feed(engine, gate, '```json\n{"name"')
    assert gate.constraining
    feed(engine, gate, ': "Read", "arguments": {"file_path": "/a.py"}}')
    assert gate.allows(eos(engine))
    gate.free()
