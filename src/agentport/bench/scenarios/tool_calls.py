"""The tool-calls scenario: BFCL-format cases sent through the official `anthropic`, `openai`
and `ollama` clients, every answer scored by `bfcl`, per model, dialect and tool choice.

Without a URL it starts our own server (a target of `targets`, with a clean environment). The
record holds every case's calls, text, stop reason and problems; the report has one row per
model, dialect and tool choice, and one per BFCL category.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentport.bench.drivers import SEED
from agentport.bench.prompts import stderr_log
from agentport.bench.report import markdown_table, new_record
from agentport.bench.scenarios.bfcl import (
    Call,
    Case,
    Reply,
    Tool,
    case_tools,
    parse_arguments,
    score_reply,
    summarize,
)
from agentport.bench.scenarios.load import Log
from agentport.bench.targets import REPO_ROOT, get_json

DEFAULT_DATA = REPO_ROOT / "bench" / "data" / "bfcl_sample.jsonl"
DIALECTS = ("anthropic", "openai", "ollama")
TOOL_CHOICES = ("auto", "required")

# ---------------------------------------------------------------------------- dialects


@dataclass(frozen=True)
class Options:
    """Per-request settings shared by every dialect."""

    model: str
    tool_choice: str
    temperature: float
    max_tokens: int
    stream: bool


def split_system(messages: Sequence[dict]) -> tuple[str | None, list[dict]]:
    """System texts joined (for Anthropic's ``system``) and the other messages."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    return ("\n\n".join(system) or None), rest


def ask_anthropic(client: Any, case: Case, tools: Sequence[Tool], opts: Options) -> Reply:
    system, messages = split_system(case.messages)
    kwargs: dict[str, Any] = {
        "model": opts.model,
        "max_tokens": opts.max_tokens,
        "messages": messages,
        "tools": [
            {"name": t.wire_name, "description": t.description, "input_schema": t.schema}
            for t in tools
        ],
        "tool_choice": {"type": "any" if opts.tool_choice == "required" else "auto"},
        # this SDK has no ``temperature`` argument any more; the wire field still exists
        "extra_body": {"temperature": opts.temperature, "seed": SEED},
    }
    if system:
        kwargs["system"] = system
    if opts.stream:
        with client.messages.stream(**kwargs) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    reply = Reply(stop=message.stop_reason)
    for block in message.content:
        if block.type == "tool_use":
            reply.calls.append(
                Call(block.name, parse_arguments(block.input), json.dumps(block.input))
            )
        elif block.type == "text":
            reply.text += block.text
    return reply


def _openai_tools(tools: Sequence[Tool]) -> list[dict]:
    return [
        {
            "type": "function",
            "function": {"name": t.wire_name, "description": t.description, "parameters": t.schema},
        }
        for t in tools
    ]


def ask_openai(client: Any, case: Case, tools: Sequence[Tool], opts: Options) -> Reply:
    kwargs: dict[str, Any] = {
        "model": opts.model,
        "max_tokens": opts.max_tokens,
        "messages": case.messages,
        "tools": _openai_tools(tools),
        "tool_choice": opts.tool_choice,
        "temperature": opts.temperature,
        "seed": SEED,
    }
    if opts.stream:
        return _openai_streamed(client.chat.completions.create(stream=True, **kwargs))
    choice = client.chat.completions.create(**kwargs).choices[0]
    reply = Reply(text=choice.message.content or "", stop=choice.finish_reason)
    for tc in choice.message.tool_calls or []:
        raw = tc.function.arguments or ""
        reply.calls.append(Call(tc.function.name, parse_arguments(raw), raw))
    return reply


def _openai_streamed(chunks: Iterable[Any]) -> Reply:
    """Assemble streamed ``tool_calls`` deltas (name once, arguments in pieces) per index."""
    reply, names, pieces = Reply(), {}, {}
    for chunk in chunks:
        for choice in chunk.choices:
            reply.text += choice.delta.content or ""
            reply.stop = choice.finish_reason or reply.stop
            for tc in choice.delta.tool_calls or []:
                fn = tc.function
                if fn is not None and fn.name:
                    names[tc.index] = fn.name
                if fn is not None and fn.arguments:
                    pieces.setdefault(tc.index, []).append(fn.arguments)
    for index in sorted(names.keys() | pieces.keys()):
        raw = "".join(pieces.get(index, []))
        reply.calls.append(Call(names.get(index, ""), parse_arguments(raw), raw))
    return reply


def ask_ollama(client: Any, case: Case, tools: Sequence[Tool], opts: Options) -> Reply:
    """``/api/chat`` with tools. Ollama has no tool_choice: every request is "auto"."""
    kwargs: dict[str, Any] = {
        "model": opts.model,
        "messages": case.messages,
        "tools": _openai_tools(tools),
        "options": {"temperature": opts.temperature, "seed": SEED, "num_predict": opts.max_tokens},
    }
    responses = client.chat(stream=True, **kwargs) if opts.stream else [client.chat(**kwargs)]
    reply = Reply()
    for response in responses:
        reply.text += response.message.content or ""
        reply.stop = response.done_reason or reply.stop
        for tc in response.message.tool_calls or []:
            args = dict(tc.function.arguments)
            reply.calls.append(Call(tc.function.name, parse_arguments(args), json.dumps(args)))
    return reply


ASK = {"anthropic": ask_anthropic, "openai": ask_openai, "ollama": ask_ollama}


def make_client(dialect: str, url: str, api_key: str, timeout: float) -> Any:
    """The official client of a dialect, pointed at ``url``, no retries, no proxies."""
    if dialect == "anthropic":
        import anthropic

        http = anthropic.DefaultHttpxClient(trust_env=False)
        return anthropic.Anthropic(
            base_url=url, api_key=api_key, max_retries=0, timeout=timeout, http_client=http
        )
    if dialect == "openai":
        import openai

        http = openai.DefaultHttpxClient(trust_env=False)
        return openai.OpenAI(
            base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=timeout, http_client=http
        )
    import ollama

    return ollama.Client(host=url, timeout=timeout, trust_env=False)


def run_case(client: Any, dialect: str, case: Case, opts: Options) -> dict:
    """Send one case, score the reply; a failed request is a reply with an error, never a crash."""
    tools = case_tools(case.functions)
    t0 = time.perf_counter()
    try:
        reply = ASK[dialect](client, case, tools, opts)
    except Exception as exc:  # an HTTP error, a timeout, an answer the client could not read
        reply = Reply(error=f"{type(exc).__name__}: {str(exc)[:300]}")
    reply.seconds = time.perf_counter() - t0
    return {
        "id": case.id,
        "category": case.category,
        "reply": asdict(reply),
        "scores": score_reply(reply, tools, case),
    }


# ---------------------------------------------------------------------------- report

TABLE_HEADERS = (
    "model",
    "dialect",
    "tool_choice",
    "cases",
    "errors",
    "well-formed %",
    "existing function %",
    "schema-valid %",
    "accuracy %",
    "hit max_tokens %",
    "median s",
)


def _fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def table_rows(runs: Sequence[dict]) -> list[list]:
    rows = []
    for run in runs:
        s = run["summary"]
        accuracy = f"{_fmt_pct(s['accuracy'])} (of {s['judged']})" if s["judged"] else ""
        rows.append(
            [
                run["model"],
                run["dialect"],
                run["tool_choice"],
                s["cases"],
                s["errors"],
                _fmt_pct(s["well_formed"]),
                _fmt_pct(s["existing_function"]),
                _fmt_pct(s["schema_valid"]),
                accuracy,
                _fmt_pct(s["truncated"]),
                s["median_s"],
            ]
        )
    return rows


def category_rows(runs: Sequence[dict]) -> list[list]:
    """Schema-valid and accuracy shares per BFCL category, per model and dialect."""
    rows = []
    for run in runs:
        categories = sorted({r["category"] for r in run["cases"]})
        for category in categories:
            s = summarize([r for r in run["cases"] if r["category"] == category])
            rows.append(
                [
                    run["model"],
                    run["dialect"],
                    run["tool_choice"],
                    category,
                    s["cases"],
                    _fmt_pct(s["schema_valid"]),
                    _fmt_pct(s["accuracy"]),
                ]
            )
    return rows


def render_markdown(record: dict) -> str:
    cfg = record["config"]
    lines = [
        f"Tool calls on {cfg['cases']} BFCL-format cases from `{cfg['data']}`: temperature "
        f"{cfg['temperature']}, max_tokens {cfg['max_tokens']}, "
        f"{'streamed' if cfg['stream'] else 'not streamed'}, seed {SEED}. Ollama has no "
        "tool_choice, so its rows are always auto. Accuracy: BFCL AST-style match against the "
        "cases' possible answers. Hit max_tokens: answers that stopped at the token limit (a "
        "call cut there is still scored as the server returned it).",
        "",
        markdown_table(TABLE_HEADERS, table_rows(record["runs"])),
        "",
        markdown_table(
            (
                "model",
                "dialect",
                "tool_choice",
                "category",
                "cases",
                "schema-valid %",
                "accuracy %",
            ),
            category_rows(record["runs"]),
        ),
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the run


@dataclass
class ToolCallsRun:
    """Which models, dialects and tool choices to send the cases through, and how."""

    models: list[str]
    dialects: list[str]
    tool_choices: list[str]
    temperature: float = 0.0
    max_tokens: int = 256
    stream: bool = False
    timeout: float = 120.0
    api_key: str = "agentport"


def _fmt_case(record: dict) -> str:
    s, reply = record["scores"], record["reply"]
    marks = "".join(
        "+" if s[key] else "-" for key in ("well_formed", "existing_function", "schema_valid")
    )
    accurate = {None: "", True: " accurate", False: " inaccurate"}[s["accurate"]]
    return f"{record['id']}: {marks}{accurate} {reply['seconds']:.1f}s {'; '.join(s['problems'])}"


def run_cases(client: Any, dialect: str, cases: Sequence[Case], opts: Options, log: Log) -> dict:
    """Every case through one client with one set of options; its run entry."""
    records = []
    for case in cases:
        records.append(run_case(client, dialect, case, opts))
        log(f"  {dialect} {opts.tool_choice} {_fmt_case(records[-1])}")
    summary = summarize(records)
    log(f"{opts.model} {dialect} {opts.tool_choice}: {summary}")
    return {
        "model": opts.model,
        "dialect": dialect,
        "tool_choice": opts.tool_choice,
        "summary": summary,
        "cases": records,
    }


def evaluate(run: ToolCallsRun, url: str, cases: Sequence[Case], log: Log = stderr_log):
    """Every case for every model, dialect and tool choice (Ollama: auto only), in that order."""
    runs = []
    for model in run.models:
        for dialect in run.dialects:
            client = make_client(dialect, url, run.api_key, run.timeout)
            for choice in ["auto"] if dialect == "ollama" else run.tool_choices:
                opts = Options(model, choice, run.temperature, run.max_tokens, run.stream)
                runs.append(run_cases(client, dialect, cases, opts, log))
    return runs


def run_tool_calls(run: ToolCallsRun, url: str, cases: Sequence[Case], data: Path) -> dict:
    """The record of one evaluation against the server at ``url``."""
    config = {**asdict(run), "data": data.name, "cases": len(cases), "seed": SEED}
    del config["api_key"]
    record = new_record("tool-calls", config, REPO_ROOT)
    record["targets"] = [{"url": url, "version": get_json(url, "/api/version")}]
    record["runs"] = evaluate(run, url.rstrip("/"), cases)
    return record
