"""Agent-loop benchmark: time to first token per turn of a Claude Code-shaped tool loop, ours
against llama.cpp's ``llama-server``.

Owns issue 8's benchmark. A conversation shaped like Claude Code's (a long system prompt and a
block of tool definitions of about ``--prefix-tokens`` tokens, counted by our
``/v1/messages/count_tokens``; a per-request billing block; a system reminder and a
mid-conversation ``system`` message) runs for ``--turns`` turns, each adding an assistant
``tool_use`` and a ``tool_result`` of about ``--result-tokens`` tokens. Then a second session's
first turn (same system prompt and tools, its own user message and a long system reminder) while
the first session stays open, the first session's next turn, and, after the server is stopped
and started again (ours with the same home), the first session's turn after that. Every answer
is short (``--max-tokens``, temperature 0, fixed seed, end-of-sequence ignored), so time to first
token is prefill time.

    python bench/agent_loop.py [--prefix-tokens 20000] [--turns 10] [--threads 2]
    python bench/agent_loop.py --prefix-tokens 4000 --turns 3      # quick mode

Both servers run the same GGUF (the embedded SmolLM2-135M), threads, parallel sequences and
context per sequence, one after the other. Ours gets the Anthropic request over
``/v1/messages``; llama-server gets the very prompt text our renderer makes of it over
``/completion`` with ``cache_prompt: true``, so both prefill the same tokens. Writes
``bench/results/agent_loop.{md,json,png}`` and prints the table and issue 8's acceptance ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from claude_shape import HEADERS, prose, tool
from common import (
    LLAMA,
    LOOPBACK,
    OURS,
    RESULTS_DIR,
    SEED,
    SIDES,
    ServerProcess,
    SseFrame,
    cpu_sample,
    foreign_cpu_share,
    free_port,
    get_text,
    http_get_json,
    http_post_json,
    markdown_table,
    stream_sse,
    wait_until,
)
from decode import LLAMA_CONTEXT_ARGS, embedded_model_path, llama_version
from llama_server import ensure_llama_server

MODEL = "claude-sonnet-4-5"  # what Claude Code asks for; ours maps claude-* to its default model
MAX_TOOLS = 24  # Claude Code's tool count
TOKENS_PER_TOOL = 800  # fewer tools below 24 x this many prefix tokens
TOOL_SHARE = 0.76  # share of the prefix's words in tool descriptions (Claude Code's proportion)
CONTENTION_SHARE = 0.10  # other processes' CPU share above which a step is flagged
BARS = {"turn": 0.10, "second_session": 0.15, "restart": 0.20}  # of ours' cold turn 1

# ---------------------------------------------------------------------------- conversation


@dataclass(frozen=True)
class Sizes:
    """Word counts of the conversation's parts (fitted to token targets by ``calibrate``)."""

    tools: int
    prefix_words: int  # system prose plus all tool descriptions
    result_words: int = 380
    user_words: int = 230
    reminder_words: int = 1150


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
        raise ValueError("turns must be at least 1")
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
        tools = []
        for index in range(sizes.tools):
            spec = tool(rng, index)
            spec["description"] = prose(rng, per_tool)
            tools.append(spec)
        cached = {"type": "ephemeral"}
        system = [
            {"type": "text", "text": "You are Claude Code, a coding agent."},
            {"type": "text", "text": prose(rng, system_words)},
        ]
        for block in system:
            block["cache_control"] = cached
        return system, tools

    def body(self, step: Step) -> dict:
        """The request of ``step``: session 1's turn ``step.turn`` or session 2's first turn."""
        if step.session == 1:
            messages = self.session_one(step.turn)
        elif step.session == 2 and step.turn == 1:
            messages = self.session_two()
        else:
            raise ValueError(f"no such step: session {step.session}, turn {step.turn}")
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
        raise ValueError("calibration probes must differ")
    slope = (c1 - c2) / (w1 - w2)
    return max(1, round(w1 + (target - c1) / slope))


def calibrate(count: Callable[[dict], int], args: argparse.Namespace) -> tuple[Sizes, dict]:
    """Word counts for the token targets, fitted with a handful of count_tokens calls."""
    tools = tool_count(args.prefix_tokens)

    def prefix_tokens(words: int) -> int:
        convo = Conversation(Sizes(tools, words), args.seed)
        return count(convo.request([{"role": "user", "content": "Hi."}], "calibrate"))

    target = args.prefix_tokens
    w1, w2 = target // 2, target // 4
    c1, c2 = prefix_tokens(w1), prefix_tokens(w2)
    words = fit_linear(w1, c1, w2, c2, target)
    counted = prefix_tokens(words)
    if abs(counted - target) > target * 0.005 and words != w1 and counted != c1:
        words = fit_linear(words, counted, w1, c1, target)  # once more, on a closer line
        counted = prefix_tokens(words)

    def round_tokens(result_words: int) -> int:
        convo = Conversation(Sizes(tools, words, result_words), args.seed)
        two = Step("turn", "", 1, 2)
        return count(convo.body(two)) - count(convo.body(Step("turn", "", 1, 1)))

    r1, r2 = 400, 200
    d1, d2 = round_tokens(r1), round_tokens(r2)
    per_word = (d1 - d2) / (r1 - r2)
    sizes = Sizes(
        tools=tools,
        prefix_words=words,
        result_words=max(1, round(args.result_tokens / per_word)),
        user_words=max(1, round(args.user_tokens / per_word)),
        reminder_words=max(1, round(args.reminder_tokens / per_word)),
    )
    record = {"prefix_tokens": counted, "tokens_per_word": per_word, "sizes": asdict(sizes)}
    return sizes, record


# ---------------------------------------------------------------------------- one request


@dataclass
class TurnResult:
    """One measured request, from the client's side plus what the server reported."""

    ttft_s: float | None = None
    total_s: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    foreign_cpu_share: float | None = None
    text: list[str] = field(default_factory=list)


CONTENT_DELTAS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}


def ours_result(frames: Iterable[tuple[float, SseFrame]], t_start: float) -> TurnResult:
    """Fold our Anthropic SSE frames. The first content delta (text, thinking or tool-call
    arguments) is the first token, as ``agentport.bench.metrics`` defines TTFT."""
    result = TurnResult()
    for t, frame in frames:
        if frame.event == "ping":
            continue
        payload = json.loads(frame.data)
        kind = payload.get("type", frame.event)
        if kind == "error":
            raise RuntimeError(f"server sent an error event: {frame.data}")
        delta = payload.get("delta") or {}
        if kind == "content_block_delta" and delta.get("type") in CONTENT_DELTAS:
            if result.ttft_s is None:
                result.ttft_s = t - t_start
            result.text.append(delta.get(CONTENT_DELTAS[delta["type"]], ""))
        usage = payload.get("usage") or (payload.get("message") or {}).get("usage") or {}
        _take_usage(result, usage)
    return result


def _take_usage(result: TurnResult, usage: dict) -> None:
    if "input_tokens" in usage:
        result.prompt_tokens = int(usage["input_tokens"])
    if usage.get("cache_read_input_tokens") is not None:
        result.cached_tokens = int(usage["cache_read_input_tokens"])
    if usage.get("output_tokens"):
        result.output_tokens = int(usage["output_tokens"])


def llama_result(frames: Iterable[tuple[float, SseFrame]], t_start: float) -> TurnResult:
    """Fold llama-server ``/completion`` SSE frames; the last one carries its timings."""
    result = TurnResult()
    for t, frame in frames:
        if frame.data == "[DONE]":
            continue
        payload = json.loads(frame.data)
        if "error" in payload:
            raise RuntimeError(f"server sent an error: {frame.data}")
        if payload.get("content"):
            if result.ttft_s is None:
                result.ttft_s = t - t_start
            result.text.append(payload["content"])
        if payload.get("stop"):
            timings = payload.get("timings") or {}
            cached, evaluated = timings.get("cache_n"), timings.get("prompt_n")
            result.cached_tokens = cached
            if cached is not None and evaluated is not None:
                result.prompt_tokens = cached + evaluated
            result.output_tokens = payload.get("tokens_predicted")
    return result


def timed(send: Callable[[], Iterable[tuple[float, SseFrame]]], fold, pid: int) -> TurnResult:
    """Send one streaming request and fold its frames, noting the CPU others took meanwhile."""
    before = cpu_sample([pid])
    t_start = time.perf_counter()
    result = fold(send(), t_start)
    result.total_s = time.perf_counter() - t_start
    result.foreign_cpu_share = foreign_cpu_share(before, cpu_sample([pid]), os.cpu_count() or 1)
    return result


# ---------------------------------------------------------------------------- servers


class Side:
    """A server under test: how to start it, and how to send a step's request to it."""

    name = ""

    def __init__(self, args: argparse.Namespace, convo: Conversation, workdir: Path) -> None:
        self.args, self.convo, self.workdir = args, convo, workdir
        self.url, self.server, self.starts = "", None, 0
        self.record: dict = {}

    def start(self) -> None:
        self.starts += 1
        self.url, self.server = self._launch()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def send(self, step: Step) -> TurnResult:
        raise NotImplementedError

    def _launch(self) -> tuple[str, ServerProcess]:
        raise NotImplementedError


class Ours(Side):
    """``python -m agentport serve``; the same home across a restart."""

    name = OURS

    def __init__(self, args, convo, workdir, home: Path | None = None) -> None:
        super().__init__(args, convo, workdir)
        self.home = home or workdir / "home-ours"

    def _launch(self) -> tuple[str, ServerProcess]:
        self.home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {
            "AGENTPORT_HOST": f"{LOOPBACK}:{port}",
            "AGENTPORT_HOME": str(self.home),
            "AGENTPORT_THREADS": str(self.args.threads),
            "AGENTPORT_PARALLEL": str(self.args.parallel),
            "AGENTPORT_CONTEXT_LENGTH": str(self.args.ctx),
            **dict(self.args.ours_env),
        }
        argv = [sys.executable, "-m", "agentport", "serve"]
        log = self.workdir / f"{self.home.name}-{self.starts}.log"
        server = ServerProcess(OURS, argv, log, env)
        url = f"http://{LOOPBACK}:{port}"
        wait_until(server, lambda: bool(self.ps(url).get("models")), self.args.startup_timeout)
        return url, server

    @staticmethod
    def ps(url: str) -> dict:
        return http_get_json(url, "/api/ps") or {}

    def parallel(self) -> int:
        """Sequences the loaded model serves at once, as our /api/ps reports."""
        models = self.ps(self.url).get("models") or [{}]
        return int(models[0].get("parallel") or 1)

    def count(self, body: dict) -> int:
        answer = http_post_json(self.url, "/v1/messages/count_tokens", body, timeout=120)
        return int(answer["input_tokens"])

    def send(self, step: Step) -> TurnResult:
        body, headers = self.convo.body(step), self.convo.headers(step.session)
        timeout = self.args.request_timeout

        def request():
            return stream_sse(self.url, "/v1/messages", body, headers, timeout=timeout)

        return timed(request, ours_result, self.server.proc.pid)

    def snapshot(self, key: str) -> None:
        """Keep /api/ps and /metrics' cache lines, for the record."""
        self.record[f"ps_{key}"] = self.ps(self.url)
        metrics = get_text(self.url, "/metrics") or ""
        lines = [ln for ln in metrics.splitlines() if "cache" in ln and not ln.startswith("#")]
        self.record[f"metrics_{key}"] = lines


class Llama(Side):
    """``llama-server`` on ``/completion`` with ``cache_prompt``, fed our prompt text."""

    name = LLAMA

    def __init__(self, args, convo, workdir, parallel: int) -> None:
        super().__init__(args, convo, workdir)
        self.parallel = parallel
        self.template = None

    def _launch(self) -> tuple[str, ServerProcess]:
        args, port = self.args, free_port()
        argv = [str(args.llama_bin), "-m", str(args.model_path), "--host", LOOPBACK]
        argv += ["--port", str(port), "-t", str(args.threads), "--parallel", str(self.parallel)]
        argv += ["-c", str(args.ctx * self.parallel), *LLAMA_CONTEXT_ARGS, "--cache-prompt"]
        argv += ["-fa", "on", *args.llama_arg]
        log = self.workdir / f"llama-server-{self.starts}.log"
        server = ServerProcess(LLAMA, argv, log)
        url = f"http://{LOOPBACK}:{port}"
        wait_until(server, lambda: http_get_json(url, "/health") is not None, args.startup_timeout)
        self.record["argv"] = argv[1:]
        return url, server

    def prompt(self, step: Step) -> str:
        """Our renderer's prompt text for the step, through the model's own chat template."""
        from agentport.api.anthropic import decode_messages
        from agentport.chat.render import render
        from agentport.chat.template import ChatTemplate

        if self.template is None:
            props = http_get_json(self.url, "/props") or {}
            source = props.get("chat_template")
            bos, eos = props.get("bos_token", ""), props.get("eos_token", "")
            self.template = ChatTemplate(source, bos, eos)
        return render(decode_messages(self.convo.body(step)), self.template).text

    def send(self, step: Step) -> TurnResult:
        body = {
            "prompt": self.prompt(step),
            "n_predict": self.convo.max_tokens,
            "temperature": 0,
            "seed": self.convo.seed,
            "ignore_eos": True,
            "stream": True,
            "cache_prompt": True,
        }
        timeout = self.args.request_timeout

        def request():
            return stream_sse(self.url, "/completion", body, timeout=timeout)

        return timed(request, llama_result, self.server.proc.pid)


# ---------------------------------------------------------------------------- the scenario


def run_side(side: Side, steps: Sequence[Step]) -> list[dict]:
    """Every step on one server, restarting it where a step says so; the server is stopped."""
    results: list[dict] = []
    side.start()
    try:
        for step in steps:
            if step.restart_before:
                if isinstance(side, Ours):
                    side.snapshot("before_restart")
                side.stop()
                side.start()
            try:
                result = side.send(step)
            except Exception as exc:
                tail = side.server.log_tail() if side.server else ""
                raise RuntimeError(f"{side.name} failed at {step.label}: {exc}\n{tail}") from exc
            results.append(asdict(result))
            print(f"{side.name:>12} {step.label:<32} {_fmt(result)}", file=sys.stderr, flush=True)
        if isinstance(side, Ours):
            side.snapshot("end")
    finally:
        side.stop()
    return results


def _fmt(result: TurnResult) -> str:
    ttft = "n/a" if result.ttft_s is None else f"{result.ttft_s:8.2f} s"
    foreign = result.foreign_cpu_share
    other = "" if foreign is None else f", others {foreign:.0%} CPU"
    return f"TTFT {ttft}, prompt {result.prompt_tokens}, cached {result.cached_tokens}{other}"


# ---------------------------------------------------------------------------- report


TABLE_HEADERS = (
    "step",
    "prompt tokens",
    "ours TTFT s",
    "ours cached",
    "llama-server TTFT s",
    "llama-server cached",
    "ours / ours turn 1",
    "llama-server / ours turn 1",
    "ours / llama-server",
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _get(results: dict[str, list[dict]], side: str, index: int, key: str):
    rows = results.get(side) or []
    return rows[index].get(key) if index < len(rows) else None


def table_rows(steps: Sequence[Step], counts: Sequence[int], results: dict) -> list[list]:
    """One row per step: TTFTs, cached tokens and the ratios to ours' cold turn 1."""
    cold = _get(results, OURS, 0, "ttft_s")
    rows = []
    for index, step in enumerate(steps):
        ours, llama = _get(results, OURS, index, "ttft_s"), _get(results, LLAMA, index, "ttft_s")
        rows.append(
            [
                step.label,
                counts[index] if index < len(counts) else None,
                ours,
                _get(results, OURS, index, "cached_tokens"),
                llama,
                _get(results, LLAMA, index, "cached_tokens"),
                _ratio(ours, cold),
                _ratio(llama, cold),
                _ratio(ours, llama),
            ]
        )
    return rows


def last_index(steps: Sequence[Step], kind: str) -> int:
    """Index of the last step of ``kind``."""
    return max(i for i, step in enumerate(steps) if step.kind == kind)


def acceptance_lines(steps: Sequence[Step], results: dict) -> list[str]:
    """Issue 8's bars: turn N, the second session and after restart against ours' cold turn 1;
    ours' turn N against llama-server's turn N."""
    cold = _get(results, OURS, 0, "ttft_s")
    lines = []
    for kind, bar in BARS.items():
        index = last_index(steps, kind)
        ratio = _ratio(_get(results, OURS, index, "ttft_s"), cold)
        if ratio is not None and index > 0:
            verdict = "met" if ratio <= bar else "NOT met"
            lines.append(
                f"{steps[index].label}: ours / ours cold turn 1 = {ratio:.3f} (bar {bar:.2f}): "
                f"{verdict}."
            )
    turn_n = last_index(steps, "turn")
    ours, llama = _get(results, OURS, turn_n, "ttft_s"), _get(results, LLAMA, turn_n, "ttft_s")
    if (ratio := _ratio(ours, llama)) is not None:
        verdict = "met" if ratio <= 1.0 else "NOT met"
        lines.append(
            f"{steps[turn_n].label}: ours / llama-server = {ratio:.2f} (bar 1.00): {verdict}."
        )
    return lines


def warning_lines(steps: Sequence[Step], counts: Sequence[int], results: dict) -> list[str]:
    """Steps that shared the CPU with other work, and prompts whose token counts differ."""
    lines = []
    for side, rows in results.items():
        busy = [
            f"{steps[i].label} ({row['foreign_cpu_share']:.0%})"
            for i, row in enumerate(rows)
            if (row.get("foreign_cpu_share") or 0) > CONTENTION_SHARE
        ]
        if busy:
            lines.append(
                f"WARNING: {side}: other processes took more than {CONTENTION_SHARE:.0%} of the "
                f"CPU during {', '.join(busy)}; those numbers are not reliable."
            )
        off = [
            f"{steps[i].label} ({row['prompt_tokens']} vs {counts[i]})"
            for i, row in enumerate(rows)
            if i < len(counts) and row.get("prompt_tokens") not in (None, counts[i])
        ]
        if off:
            lines.append(f"WARNING: {side} prompt tokens differ from the count: {', '.join(off)}")
    return lines


def render_markdown(record: dict) -> str:
    cfg = record["config"]
    steps = [Step(**s) for s in record["steps"]]
    counts, results = record["prompt_tokens"], record["results"]
    lines = [
        f"Agent loop, {cfg['model']}: a Claude Code-shaped prefix of "
        f"{record['calibration']['prefix_tokens']} tokens ({cfg['tools']} tools), {cfg['turns']} "
        f"turns adding a tool call and a ~{cfg['result_tokens']}-token result each; "
        f"{cfg['threads']} threads, {cfg['parallel']} parallel x {cfg['ctx']} context, "
        f"max_tokens {cfg['max_tokens']}, temperature 0. TTFT = request sent to first content "
        "token. Cached = prompt tokens the server reports it did not evaluate.",
        "",
        markdown_table(TABLE_HEADERS, table_rows(steps, counts, results)),
        "",
        *acceptance_lines(steps, results),
        *warning_lines(steps, counts, results),
    ]
    return "\n".join(lines).rstrip() + "\n"


def plot(record: dict, path: Path) -> None:
    """TTFT per step, both servers, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [Step(**s) for s in record["steps"]]
    turns = [i for i, s in enumerate(steps) if s.kind == "turn"]
    extra = [i for i, s in enumerate(steps) if s.kind != "turn"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for (side, rows), color in zip(record["results"].items(), ("C0", "C1"), strict=False):
        points = [(i + 1, rows[i]["ttft_s"]) for i in turns if rows[i]["ttft_s"] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=color, label=side)
        dots = [(i + 1, rows[i]["ttft_s"]) for i in extra if rows[i]["ttft_s"] is not None]
        if dots:
            ax.scatter(*zip(*dots, strict=True), marker="s", color=color)
    ticks = [i + 1 for i in range(len(steps))]
    names = [str(s.turn) if s.kind == "turn" else _short(s.kind) for s in steps]
    ax.set_xticks(ticks, names)
    ax.set_yscale("log")
    ax.set_xlabel("turn of session 1 (then: second session, session 1 resumes, after restart)")
    ax.set_ylabel("time to first token, s")
    cfg = record["config"]
    ax.set_title(f"{cfg['model']}, prefix {record['calibration']['prefix_tokens']} tokens")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _short(kind: str) -> str:
    return {"second_session": "s2", "resume": "s1", "restart": "restart"}.get(kind, kind)


# ---------------------------------------------------------------------------- main


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("AGENTPORT_"):
        raise argparse.ArgumentTypeError("expected AGENTPORT_NAME=value")
    return name, value


def _sides(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in SIDES for name in names):
        raise argparse.ArgumentTypeError(f"sides are a comma list of {', '.join(SIDES)}")
    return [name for name in SIDES if name in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prefix-tokens", type=int, default=20000, help="system prompt + tools")
    p.add_argument("--turns", type=int, default=10, help="turns of the first session")
    p.add_argument("--result-tokens", type=int, default=500, help="tokens per tool_result")
    p.add_argument("--user-tokens", type=int, default=300, help="session 2's user message")
    p.add_argument("--reminder-tokens", type=int, default=1500, help="session 2's reminder")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request")
    p.add_argument("--threads", type=int, default=2, help="engine threads for both servers")
    p.add_argument("--parallel", type=int, default=0,
                   help="sequences per server (0: what our memory plan picks, matched by "
                   "llama-server)")  # fmt: skip
    p.add_argument("--ctx", type=int, default=32768, help="context per sequence")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--sides", type=_sides, default=list(SIDES), help="ours,llama-server")
    p.add_argument("--ours-env", type=_env_pair, action="append", default=[],
                   help="extra AGENTPORT_NAME=value for our server (repeatable)")  # fmt: skip
    p.add_argument("--llama-arg", action="append", default=[],
                   help="extra llama-server argument (repeatable; use --llama-arg=-x)")  # fmt: skip
    p.add_argument("--model-path", type=Path, help="GGUF for llama-server (default: embedded)")
    p.add_argument("--llama-bin", type=Path, help="llama-server binary (default: build or find)")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds per start")
    p.add_argument("--request-timeout", type=float, default=1800.0, help="seconds per read")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results are written")
    args = p.parse_args(argv)
    if args.turns < 1 or args.prefix_tokens < 500:
        p.error("--turns must be >= 1 and --prefix-tokens >= 500")
    return args


def prepare(args: argparse.Namespace, workdir: Path) -> tuple[Conversation, list[int], dict, int]:
    """Fit the conversation to the token targets and count every step's prompt, on a throwaway
    server of ours (its own home, so the measured one starts cold); also its parallel count."""
    counter = Ours(args, None, workdir, home=workdir / "home-calibration")  # type: ignore[arg-type]
    counter.start()
    try:
        sizes, calibration = calibrate(counter.count, args)
        convo = Conversation(sizes, args.seed, args.max_tokens)
        counts = [counter.count(convo.body(step)) for step in scenario_steps(args.turns)]
        parallel = args.parallel or counter.parallel()
        calibration["ps"] = counter.ps(counter.url)
    finally:
        counter.stop()
    return convo, counts, calibration, parallel


def make_record(args, steps, counts, calibration, results, sides: dict[str, Side]) -> dict:
    return {
        "benchmark": "agent_loop",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "model": args.model_path.name,
            "prefix_tokens": args.prefix_tokens,
            "tools": calibration["sizes"]["tools"],
            "turns": args.turns,
            "result_tokens": args.result_tokens,
            "user_tokens": args.user_tokens,
            "reminder_tokens": args.reminder_tokens,
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "parallel": args.parallel_used,
            "ctx": args.ctx,
            "seed": args.seed,
            "sides": args.sides,
            "ours_env": dict(args.ours_env),
            "llama_server_version": getattr(args, "llama_version", None),
            "endpoints": {OURS: "/v1/messages", LLAMA: "/completion (cache_prompt)"},
        },
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": args.loadavg_start,
            "loadavg_end": os.getloadavg(),
        },
        "calibration": calibration,
        "steps": [asdict(step) for step in steps],
        "prompt_tokens": counts,
        "results": results,
        "servers": {name: side.record for name, side in sides.items()},
    }


def write_results(out_dir: Path, record: dict, markdown: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "agent_loop.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / "agent_loop.md").write_text(markdown)
    plot(record, out_dir / "agent_loop.png")


def run(args: argparse.Namespace, workdir: Path) -> str:
    """Calibrate, run every side, write the results after each (so a cut-off run leaves what it
    measured) and return the report."""
    steps = scenario_steps(args.turns)
    convo, counts, calibration, args.parallel_used = prepare(args, workdir)
    print(f"calibrated: {json.dumps(calibration['sizes'])}", file=sys.stderr)
    sides: dict[str, Side] = {}
    if OURS in args.sides:
        sides[OURS] = Ours(args, convo, workdir)
    if LLAMA in args.sides:
        sides[LLAMA] = Llama(args, convo, workdir, args.parallel_used)
    results: dict[str, list[dict]] = {}
    markdown = ""
    for name, side in sides.items():
        results[name] = run_side(side, steps)
        record = make_record(args, steps, counts, calibration, results, sides)
        markdown = render_markdown(record)
        write_results(args.out_dir, record, markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.loadavg_start = os.getloadavg()
    args.model_path = args.model_path or embedded_model_path()
    if LLAMA in args.sides:
        args.llama_bin = args.llama_bin or ensure_llama_server()
        args.llama_version = llama_version(args.llama_bin)
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        try:
            markdown = run(args, Path(tmp))
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(markdown)
    print(f"results: {args.out_dir / 'agent_loop.md'} (.json, .png)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
