"""Berkeley Function Calling Leaderboard (BFCL) cases and the scoring of tool-call answers.

Owns reading BFCL-format cases (one JSON object a line: `id`, `question` as a list of turns of
messages, `function` as a list of definitions whose `parameters` use BFCL's types: dict, float,
tuple, any, ...), turning those definitions into JSON-schema tools, and scoring every answer at
the levels `bench/README.md` defines (well-formed, existing function, schema-valid, accurate:
BFCL's AST check, simplified).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentport.bench.metrics import percentile
from agentport.errors import InvalidRequestError

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
        raise InvalidRequestError("question must be a non-empty list of turns")
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
