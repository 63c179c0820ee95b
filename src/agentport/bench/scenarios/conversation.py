"""The Claude Code-shaped conversation the agent-loop and claude-shape scenarios send.

Claude Code's request: a billing block whose hash changes per request, then a long system prompt
as cached blocks; up to 24 tool definitions with JSON schemas; user text blocks carrying system
reminders; a mid-conversation `system` message; each later turn adds an assistant `tool_use` and
a user `tool_result`. A second session shares the system prompt and tools and opens with its own
user message and a long reminder. Every body is deterministic for a seed, and its parts are
sized in words, fitted to token targets by `calibrate` with a server's token counter.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from agentport.bench.drivers import SEED
from agentport.bench.prompts import prose
from agentport.errors import InvalidRequestError

MODEL = "claude-sonnet-4-5"  # what Claude Code asks for; ours maps claude-* to its default model
MAX_TOOLS = 24  # Claude Code's tool count
TOKENS_PER_TOOL = 800  # fewer tools below 24 x this many prefix tokens
TOOL_SHARE = 0.76  # share of the prefix's words in tool descriptions (Claude Code's proportion)
HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219",
           "x-api-key": "bench"}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """Word counts of the conversation's parts (fitted to token targets by `calibrate`)."""

    tools: int
    prefix_words: int  # system prose plus all tool descriptions
    result_words: int = 380
    user_words: int = 230
    reminder_words: int = 1150


@dataclass(frozen=True)
class TokenTargets:
    """The token counts `calibrate` fits the word counts to."""

    prefix: int = 20000  # system prompt + tools
    result: int = 500  # each tool_result
    user: int = 300  # session 2's user message
    reminder: int = 1500  # session 2's system reminder


@dataclass(frozen=True)
class Step:
    """One measured request: which session and turn, and whether the server restarts first."""

    kind: str  # turn, second_session, resume, restart
    label: str
    session: int
    turn: int
    restart_before: bool = False


def scenario_steps(turns: int) -> list[Step]:
    """Session 1's turns, session 2's first turn, session 1 again, then after a restart."""
    if turns < 1:
        raise InvalidRequestError("turns must be at least 1")
    steps = [Step("turn", f"turn {k}", 1, k) for k in range(1, turns + 1)]
    steps.append(Step("second_session", "second session, turn 1", 2, 1))
    steps.append(Step("resume", f"session 1 resumes, turn {turns + 1}", 1, turns + 1))
    steps.append(Step("restart", f"after restart, turn {turns + 2}", 1, turns + 2, True))
    return steps


def tool_count(prefix_tokens: int) -> int:
    """Claude Code's 24 tools, fewer for a small prefix so descriptions keep some length."""
    return max(2, min(MAX_TOOLS, prefix_tokens // TOKENS_PER_TOOL))


def billing(tag: str) -> str:
    """Claude Code's billing block: its hash differs from request to request."""
    cch = hashlib.sha256(tag.encode()).hexdigest()[:5]
    return f"x-anthropic-billing-header: cc_version=2.1.328; cch={cch};"


def reminder(words: int, seed: int) -> str:
    return f"<system-reminder>{prose(random.Random(seed), words)}</system-reminder>"


def tool(rng: random.Random, index: int, description_words: int) -> dict:
    """One tool definition shaped like Claude Code's (a draft-07 schema, five parameters)."""
    properties = {
        "file_path": {"type": "string", "description": prose(rng, 25)},
        "limit": {"type": "integer", "description": prose(rng, 12)},
        "mode": {"type": "string", "enum": ["read", "write", "append"]},
        "options": {
            "type": "object",
            "properties": {"recursive": {"type": "boolean"}, "glob": {"type": "string"}},
        },
        "paths": {"type": "array", "items": {"type": "string"}},
    }
    return {
        "name": f"Tool{index:02d}",
        "description": prose(rng, description_words),
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": properties,
            "required": ["file_path"],
            "additionalProperties": False,
        },
    }


class Conversation:
    """The request bodies of the scenario: one shared prefix, two sessions, deterministic."""

    def __init__(self, sizes: Sizes, seed: int = SEED, max_tokens: int = 16) -> None:
        self.sizes, self.seed, self.max_tokens = sizes, seed, max_tokens
        self.system, self.tools = self._prefix()
        self.session_ids = {1: str(uuid.UUID(int=seed)), 2: str(uuid.UUID(int=seed + 1))}

    def _prefix(self) -> tuple[list[dict], list[dict]]:
        rng = random.Random(self.seed)
        sizes = self.sizes
        per_tool = max(5, round(sizes.prefix_words * TOOL_SHARE / sizes.tools))
        system_words = max(5, sizes.prefix_words - per_tool * sizes.tools)
        tools = [tool(rng, index, per_tool) for index in range(sizes.tools)]
        cached = {"type": "ephemeral"}
        system = [
            {
                "type": "text",
                "text": "You are Claude Code, a coding agent.",
                "cache_control": cached,
            },
            {"type": "text", "text": prose(rng, system_words), "cache_control": cached},
        ]
        return system, tools

    def body(self, step: Step) -> dict:
        """The request of ``step``: session 1's turn ``step.turn`` or session 2's first turn."""
        if step.session == 1:
            messages = self.session_one(step.turn)
        elif step.session == 2 and step.turn == 1:
            messages = self.session_two()
        else:
            raise InvalidRequestError(f"no such step: session {step.session}, turn {step.turn}")
        return self.request(messages, f"s{step.session} t{step.turn}", step.session)

    def request(self, messages: list[dict], tag: str, session: int = 1) -> dict:
        return {
            "model": MODEL,
            "max_tokens": self.max_tokens,
            "stream": True,
            "temperature": 0,
            "seed": self.seed,
            "ignore_eos": True,
            "system": [{"type": "text", "text": billing(tag)}, *self.system],
            "tools": self.tools,
            "messages": messages,
            "metadata": {"user_id": json.dumps({"session_id": self.session_ids[session]})},
        }

    def session_one(self, turn: int) -> list[dict]:
        """Session 1's messages at ``turn``: the opening, then a tool call and result per turn."""
        messages = [
            {"role": "user", "content": [
                {"type": "text", "text": reminder(120, self.seed + 11)},
                {"type": "text", "text": "Fix the failing test."}]},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": "Start by reading the test file."},
        ]  # fmt: skip
        for index in range(1, turn):
            messages += self.tool_round(index)
        return messages

    def tool_round(self, index: int) -> list[dict]:
        """The assistant's ``index``-th tool call and the user's result for it."""
        call_id = f"toolu_{index:04d}"
        name = self.tools[(index - 1) % len(self.tools)]["name"]
        call = {"type": "tool_use", "id": call_id, "name": name,
                "input": {"file_path": f"src/module_{index}.py"}}  # fmt: skip
        text = prose(random.Random(self.seed * 1000 + index), self.sizes.result_words)
        return [
            {"role": "assistant", "content": [{"type": "text", "text": "Reading it."}, call]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": text}]},
        ]  # fmt: skip

    def session_two(self) -> list[dict]:
        """Session 2's opening: its own request, then a long system reminder."""
        rng = random.Random(self.seed + 2)
        ask = "Add a command line flag for verbose output. " + prose(rng, self.sizes.user_words)
        text = reminder(self.sizes.reminder_words, self.seed + 3)
        content = [{"type": "text", "text": ask}, {"type": "text", "text": text}]
        return [{"role": "user", "content": content}]

    def headers(self, session: int) -> dict[str, str]:
        return HEADERS | {"x-claude-code-session-id": self.session_ids[session]}


# ---------------------------------------------------------------------------- calibration


def fit_linear(w1: int, c1: int, w2: int, c2: int, target: int) -> int:
    """Words giving ``target`` tokens on the line through (w1, c1) and (w2, c2)."""
    if w1 == w2 or c1 == c2:
        raise InvalidRequestError("calibration probes must differ")
    slope = (c1 - c2) / (w1 - w2)
    return max(1, round(w1 + (target - c1) / slope))


def _fit_prefix(count: Callable[[dict], int], tools: int, target: int, seed: int):
    def prefix_tokens(words: int) -> int:
        convo = Conversation(Sizes(tools, words), seed)
        return count(convo.request([{"role": "user", "content": "Hi."}], "calibrate"))

    w1, w2 = target // 2, target // 4
    c1, c2 = prefix_tokens(w1), prefix_tokens(w2)
    words = fit_linear(w1, c1, w2, c2, target)
    counted = prefix_tokens(words)
    if abs(counted - target) > target * 0.005 and words != w1 and counted != c1:
        words = fit_linear(words, counted, w1, c1, target)  # once more, on a closer line
        counted = prefix_tokens(words)
    return words, counted


def calibrate(count: Callable[[dict], int], targets: TokenTargets, seed: int = SEED):
    """Word counts for the token targets, fitted with a handful of token-count calls; returns
    the sizes and a record of the fit."""
    tools = tool_count(targets.prefix)
    words, counted = _fit_prefix(count, tools, targets.prefix, seed)

    def round_tokens(result_words: int) -> int:
        convo = Conversation(Sizes(tools, words, result_words), seed)
        return count(convo.body(Step("turn", "", 1, 2))) - count(convo.body(Step("turn", "", 1, 1)))

    r1, r2 = 400, 200
    per_word = (round_tokens(r1) - round_tokens(r2)) / (r1 - r2)
    sizes = Sizes(
        tools=tools,
        prefix_words=words,
        result_words=max(1, round(targets.result / per_word)),
        user_words=max(1, round(targets.user / per_word)),
        reminder_words=max(1, round(targets.reminder / per_word)),
    )
    record = {"prefix_tokens": counted, "tokens_per_word": per_word, "sizes": asdict(sizes)}
    return sizes, record
