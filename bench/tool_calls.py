"""Tool-call evaluation on Berkeley Function Calling Leaderboard (BFCL) cases, per model, dialect.

Owns reading BFCL-format cases (one JSON object a line: ``id``, ``question`` as a list of turns of
messages, ``function`` as a list of definitions whose ``parameters`` use BFCL's types: dict,
float, tuple, any, ...), turning those definitions into JSON-schema tools, sending each case
through the official ``anthropic``, ``openai`` and ``ollama`` clients, and scoring every answer:

- well-formed: at least one tool call came back and every call's arguments parsed to an object;
- existing function: ... and every call names one of the case's functions;
- schema-valid: ... and every call's arguments validate against that function's JSON schema;
- accurate (only for cases with a BFCL ``ground_truth``, inline or from ``--answers``): the calls
  match the possible answers the way BFCL's AST checker matches them (same number of calls, in
  any order; strings compared without case, spaces and ``,./-_*^``; ``""`` marks an optional
  parameter that may be left out).

    python bench/tool_calls.py [--data FILE] [--url URL] [--model M]
        [--dialect anthropic,openai,ollama] [--tool-choice auto|required] [--limit N]

Without ``--url`` it starts ``python -m agentport serve`` on a free loopback port with a temporary
home. Prints a markdown table per model and dialect and writes it, with every case's request
summary, answer and verdict, to ``bench/results/tool_calls-<timestamp>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    LOOPBACK,
    RESULTS_DIR,
    ROOT,
    SEED,
    http_get_json,
    markdown_table,
    percentile,
    split_loopback_url,
)
from decode import start_ours

DEFAULT_DATA = ROOT / "bench" / "data" / "bfcl_sample.jsonl"
DIALECTS = ("anthropic", "openai", "ollama")
TOOL_CHOICES = ("auto", "required")

# ---------------------------------------------------------------------------- BFCL cases

# BFCL's parameter types that JSON schema spells differently; "any" drops the type altogether.
BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array"}
_NESTED_ONE = ("items", "additionalProperties", "not")
_NESTED_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")


def bfcl_to_json_schema(schema: Any) -> Any:
    """A BFCL parameter schema as JSON schema: dict->object, float->number, tuple->array, any->{}.

    Recurses into properties, items, additionalProperties and the combinators; every other
    keyword (description, enum, default, required, ...) is kept as it is.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            converted = _convert_type(value)
            if converted is not None:
                out["type"] = converted
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: bfcl_to_json_schema(sub) for name, sub in value.items()}
        elif key in _NESTED_ONE:
            out[key] = bfcl_to_json_schema(value)
        elif key in _NESTED_MANY and isinstance(value, list):
            out[key] = [bfcl_to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    return out


def _convert_type(value: Any) -> Any:
    if isinstance(value, list):
        types = [_convert_type(v) for v in value]
        return None if None in types else types
    if value == "any":
        return None
    return BFCL_TYPES.get(value, value)


@dataclass(frozen=True)
class Tool:
    """One case function as sent: its BFCL name, the name on the wire, its JSON schema."""

    name: str
    wire_name: str
    description: str
    schema: dict
    bfcl: dict


def wire_name(name: str) -> str:
    """A function name the APIs accept (``^[a-zA-Z0-9_-]{1,64}$``): BFCL's dots become ``_``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "_"


def case_tools(functions: Sequence[dict]) -> list[Tool]:
    """The case's functions as tools with JSON-schema parameters (an empty object if none)."""
    tools = []
    for fn in functions:
        params = fn.get("parameters") or {"type": "dict", "properties": {}}
        schema = bfcl_to_json_schema(params)
        schema.setdefault("type", "object")
        tools.append(Tool(fn["name"], wire_name(fn["name"]), fn.get("description", ""), schema, fn))
    return tools


@dataclass
class Case:
    """One BFCL entry: its id, the first turn's messages, its functions and possible answers."""

    id: str
    messages: list[dict]
    functions: list[dict]
    ground_truth: list[dict] | None = None

    @property
    def category(self) -> str:
        """BFCL's category, from the id (``parallel_multiple_3`` -> ``parallel_multiple``)."""
        head, _, tail = self.id.rpartition("_")
        return head if head and tail.isdigit() else self.id


def first_turn(question: Any) -> list[dict]:
    """The messages of the question's first turn; a flat message list is taken as one turn.

    Later turns of BFCL's multi-turn categories depend on executing the calls, which this
    script does not do.
    """
    if not isinstance(question, list) or not question:
        raise ValueError("question must be a non-empty list of turns")
    turn = question[0] if isinstance(question[0], list) else question
    return [{"role": m["role"], "content": m["content"]} for m in turn]


def parse_case(entry: dict, answers: dict[str, list] | None = None) -> Case:
    """A Case from one BFCL line; ``answers`` maps ids to possible_answer ground truths."""
    truth = entry.get("ground_truth")
    if truth is None and answers:
        truth = answers.get(entry["id"])
    return Case(entry["id"], first_turn(entry["question"]), list(entry["function"]), truth)


def read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_cases(path: Path, answers_path: Path | None = None, limit: int | None = None):
    """The first ``limit`` cases of a BFCL JSONL file, with answers from a possible_answer file."""
    answers = None
    if answers_path is not None:
        answers = {a["id"]: a["ground_truth"] for a in read_jsonl(answers_path)}
    entries = read_jsonl(path)[:limit] if limit else read_jsonl(path)
    return [parse_case(entry, answers) for entry in entries]


# ---------------------------------------------------------------------------- schema validation

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def schema_errors(value: Any, schema: Any) -> list[str]:
    """What is wrong with ``value`` against a JSON schema (``jsonschema``); empty when valid."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(value)]


# ---------------------------------------------------------------------------- BFCL answer check

_PUNCTUATION = re.compile(r"[ ,./\-_*^]")
_BFCL_PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "tuple": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
}


def standardize(text: str) -> str:
    """BFCL's string normal form: no spaces or ``,./-_*^``, lower case, ``'`` as ``"``."""
    return _PUNCTUATION.sub("", text).lower().replace("'", '"')


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return standardize(value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def value_matches(value: Any, options: Sequence[Any], schema: dict | None) -> bool:
    """Whether a call's argument is one of the possible answers for that parameter.

    ``schema`` is the parameter's BFCL definition (its ``type`` is checked first; an int is
    fine for a float). Dicts match key by key against each option dict, lists of dicts item by
    item in order, strings and string lists after ``standardize``.
    """
    schema = schema or {}
    kind = schema.get("type", "any")
    if kind in _BFCL_PY_TYPES and not _BFCL_PY_TYPES[kind](value):
        return False
    items = schema.get("items") or {}
    for option in options:
        if option == "":
            continue
        if kind == "dict" and isinstance(option, dict):
            if dict_matches(value, option, schema.get("properties") or {}):
                return True
        elif isinstance(option, list) and option and all(isinstance(o, dict) for o in option):
            if _dict_list_matches(value, option, items.get("properties") or {}):
                return True
        elif _json_equal(_norm(value), _norm(option)):
            return True
    return False


def _dict_list_matches(value: Any, option: list[dict], properties: dict) -> bool:
    if not isinstance(value, list) or len(value) != len(option):
        return False
    return all(dict_matches(v, o, properties) for v, o in zip(value, option, strict=True))


def dict_matches(value: Any, option: dict, properties: dict) -> bool:
    """A dict argument against one possible-answer dict (each key: a list of possible values)."""
    if not isinstance(value, dict):
        return False
    for key, item in value.items():
        if key not in option or not value_matches(item, option[key], properties.get(key)):
            return False
    return all(key in value or "" in opts for key, opts in option.items())


def call_matches(name: str, args: dict, expected: dict, function: dict) -> bool:
    """One call against one ground-truth entry ``{function name: {param: [possible values]}}``."""
    ((expected_name, params),) = expected.items()
    if name != expected_name:
        return False
    spec = function.get("parameters") or {}
    if any(req not in args for req in spec.get("required", [])):
        return False
    return dict_matches(args, params, spec.get("properties") or {})


def calls_match(calls: Sequence[tuple[str, dict]], truth: Sequence[dict], functions) -> bool:
    """All calls against all ground-truth entries: same count, each entry matched once, any order.

    Like BFCL's no-order parallel checker, each entry takes the first unmatched call that fits.
    """
    if len(calls) != len(truth):
        return False
    by_name = {fn["name"]: fn for fn in functions}
    taken: set[int] = set()
    for expected in truth:
        fn = by_name.get(next(iter(expected)), {})
        for index, (name, args) in enumerate(calls):
            if index not in taken and call_matches(name, args, expected, fn):
                taken.add(index)
                break
        else:
            return False
    return True


# ---------------------------------------------------------------------------- replies and scores


@dataclass
class Call:
    """One tool call as it came back: wire name, arguments (None when they did not parse)."""

    name: str
    arguments: dict | None
    raw: str = ""


@dataclass
class Reply:
    """What one request returned, reduced to what the scores need."""

    calls: list[Call] = field(default_factory=list)
    text: str = ""
    stop: str | None = None
    error: str | None = None
    seconds: float = 0.0


def parse_arguments(raw: Any) -> dict | None:
    """Arguments as an object: a dict as is, a JSON text decoded, anything else None."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def score_reply(reply: Reply, tools: Sequence[Tool], case: Case) -> dict:
    """The four verdicts of one reply and the problems found on the way."""
    by_wire = {tool.wire_name: tool for tool in tools}
    problems = [reply.error] if reply.error else []
    well_formed = bool(reply.calls) and all(c.arguments is not None for c in reply.calls)
    if not reply.calls and not reply.error:
        problems.append("no tool call")
    problems += [f"{c.name}: arguments did not parse" for c in reply.calls if c.arguments is None]
    existing = well_formed and all(c.name in by_wire for c in reply.calls)
    problems += [f"{c.name}: no such function" for c in reply.calls if c.name not in by_wire]
    valid = existing
    for call in reply.calls if existing else []:
        errors = schema_errors(call.arguments, by_wire[call.name].schema)
        problems += [f"{call.name}: {e}" for e in errors]
        valid = valid and not errors
    accurate = None
    if case.ground_truth is not None:
        named = [(by_wire[c.name].name, c.arguments) for c in reply.calls] if existing else []
        accurate = existing and calls_match(named, case.ground_truth, case.functions)
    return {
        "well_formed": well_formed,
        "existing_function": existing,
        "schema_valid": valid,
        "accurate": accurate,
        "problems": problems,
    }


def _pct(flags: Sequence[bool]) -> float | None:
    return 100.0 * sum(flags) / len(flags) if flags else None


# stop reasons that mean the answer hit max_tokens (Anthropic; OpenAI and Ollama)
TRUNCATED = ("max_tokens", "length")


def summarize(records: Sequence[dict]) -> dict:
    """Shares (in %) over one model and dialect's records, plus errors and median seconds.

    ``truncated`` is the share of answers that stopped at the token limit.
    """
    scores = [r["scores"] for r in records]
    judged = [s["accurate"] for s in scores if s["accurate"] is not None]
    seconds = [r["reply"]["seconds"] for r in records]
    return {
        "cases": len(records),
        "errors": sum(r["reply"]["error"] is not None for r in records),
        "well_formed": _pct([s["well_formed"] for s in scores]),
        "existing_function": _pct([s["existing_function"] for s in scores]),
        "schema_valid": _pct([s["schema_valid"] for s in scores]),
        "accuracy": _pct(judged),
        "judged": len(judged),
        "truncated": _pct([r["reply"]["stop"] in TRUNCATED for r in records]),
        "median_s": percentile(seconds, 50) if seconds else None,
    }


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


def write_results(out_dir: Path, record: dict, markdown: str) -> Path:
    """Write ``tool_calls-<timestamp>.json`` and ``.md``; return the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"tool_calls-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    return stem.with_suffix(".json")


# ---------------------------------------------------------------------------- main


def _names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        if not names or any(name not in choices for name in names):
            raise argparse.ArgumentTypeError(f"a comma list of {', '.join(choices)}")
        return [name for name in choices if name in names]

    return parse


def _models(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BFCL-format JSONL cases")
    p.add_argument("--answers", type=Path, help="BFCL possible_answer JSONL (id, ground_truth)")
    p.add_argument("--url", help="a running server (loopback); default: start our own")
    p.add_argument("--model", type=_models, default=["smollm2:135m"], help="comma list")
    p.add_argument("--dialect", type=_names(DIALECTS), default=list(DIALECTS), help="comma list")
    p.add_argument("--tool-choice", type=_names(TOOL_CHOICES), default=["auto"], help="comma list")
    p.add_argument("--limit", type=int, help="only the first N cases")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--stream", action="store_true", help="stream answers (clients assemble)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--api-key", default="agentport", help="sent by the clients")
    p.add_argument("--threads", type=int, default=2, help="engine threads of the started server")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results are written")
    return p.parse_args(argv)


def _fmt_case(record: dict) -> str:
    s, reply = record["scores"], record["reply"]
    marks = "".join(
        "+" if s[key] else "-" for key in ("well_formed", "existing_function", "schema_valid")
    )
    accurate = {None: "", True: " accurate", False: " inaccurate"}[s["accurate"]]
    return f"{record['id']}: {marks}{accurate} {reply['seconds']:.1f}s {'; '.join(s['problems'])}"


def evaluate(args: argparse.Namespace, url: str, cases: Sequence[Case]) -> list[dict]:
    """Every case for every model, dialect and tool choice (Ollama: auto only), in that order."""
    runs = []
    for model in args.model:
        for dialect in args.dialect:
            client = make_client(dialect, url, args.api_key, args.timeout)
            choices = ["auto"] if dialect == "ollama" else args.tool_choice
            for choice in choices:
                opts = Options(model, choice, args.temperature, args.max_tokens, args.stream)
                records = []
                for case in cases:
                    records.append(run_case(client, dialect, case, opts))
                    print(f"  {dialect} {choice} {_fmt_case(records[-1])}", file=sys.stderr)
                summary = summarize(records)
                print(f"{model} {dialect} {choice}: {summary}", file=sys.stderr)
                runs.append(
                    {
                        "model": model,
                        "dialect": dialect,
                        "tool_choice": choice,
                        "summary": summary,
                        "cases": records,
                    }
                )
    return runs


def make_record(args: argparse.Namespace, url: str, cases: Sequence[Case], runs) -> dict:
    return {
        "benchmark": "tool_calls",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "data": args.data.name,
            "cases": len(cases),
            "models": args.model,
            "dialects": args.dialect,
            "tool_choice": args.tool_choice,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "stream": args.stream,
            "seed": SEED,
            "server": http_get_json(url, "/api/version"),
        },
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM (``timeout``, a CI runner) unwinds through ``finally`` and stops the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cases = load_cases(args.data, args.answers, args.limit)
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        url, server = args.url, None
        if url is not None:
            split_loopback_url(url)  # raises unless it is a loopback URL
        else:
            try:
                url, server = start_ours(args.threads, Path(tmp), args.startup_timeout)
            except (RuntimeError, OSError) as exc:
                print(f"error: could not start the server on {LOOPBACK}: {exc}", file=sys.stderr)
                return 1
        try:
            runs = evaluate(args, url.rstrip("/"), cases)
            record = make_record(args, url, cases, runs)
        finally:
            if server is not None:
                server.stop()
    markdown = render_markdown(record)
    print(markdown)
    print(f"results: {write_results(args.out_dir, record, markdown)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
