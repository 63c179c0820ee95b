"""The agent-loop scenario: time to first token per turn of a Claude Code-shaped tool loop,
agentport against llama.cpp's `llama-server` (issue 8).

A `conversation.Conversation` fitted to a prefix of about `prefix` tokens runs for `turns`
turns, each adding a tool call and its result; then a second session's first turn while the
first stays open, the first session's next turn, and, after the server is stopped and started
again (ours with the same home), the turn after that. Every answer is short, so time to first
token is prefill time. Ours gets the Anthropic request on `/v1/messages`; llama-server gets the
very prompt text our renderer makes of it on `/completion` with `cache_prompt`, so both prefill
the same tokens. The servers run one after the other; each step records the metrics of
`metrics.py` and the share of the CPU other processes took meanwhile.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from agentport.bench import cpu, metrics
from agentport.bench.cpu import CONTENTION_SHARE
from agentport.bench.drivers import HttpDriver
from agentport.bench.prompts import stderr_log
from agentport.bench.report import markdown_table, model_facts, new_record, write_outputs
from agentport.bench.scenarios.conversation import (
    MODEL,
    Conversation,
    Step,
    TokenTargets,
    calibrate,
    scenario_steps,
)
from agentport.bench.scenarios.load import Log
from agentport.bench.targets import (
    REPO_ROOT,
    ServerOptions,
    Target,
    TargetSpec,
    get_json,
    get_text,
    post_json,
    start,
    stop_process,
)
from agentport.errors import AgentportError, ApiError

OURS, LLAMA = "agentport", "llama-server"
SIDES = (OURS, LLAMA)
BARS = {"turn": 0.10, "second_session": 0.15, "restart": 0.20}  # of ours' cold turn 1


@dataclass
class AgentLoopConfig:
    tokens: TokenTargets = field(default_factory=TokenTargets)
    turns: int = 10
    max_tokens: int = 16
    seed: int = 1234
    sides: tuple[str, ...] = SIDES
    request_timeout: float = 1800.0


# ---------------------------------------------------------------------------- servers


class Side:
    """One server under test, started (and restarted) through `targets`, driven step by step."""

    def __init__(self, kind: str, opts: ServerOptions, convo: Conversation, timeout: float):
        self.spec = TargetSpec(kind, kind, "anthropic")
        self.opts, self.convo, self.timeout = opts, convo, timeout
        self.target: Target | None = None
        self.record: dict = {}
        self.template = None

    @property
    def url(self) -> str:
        return self.target.url if self.target else ""

    def start(self) -> None:
        self.target = start(self.spec, self.opts)

    def stop(self) -> None:
        if self.target is not None and self.target.process is not None:
            stop_process(self.target.process)
        self.target = None

    def send(self, step: Step) -> dict:
        """One step's request, its metrics and the CPU other processes took meanwhile."""
        before = cpu.sample(self.target.process.pid if self.target.process else None)
        if self.spec.kind == OURS:
            driver = HttpDriver(self.url, "anthropic", MODEL, self.timeout)
            tl = driver.send(self.convo.body(step), self.convo.headers(step.session))
        else:
            driver = HttpDriver(self.url, "llama-completion", MODEL, self.timeout)
            tl = driver.send(self.completion_body(step))
        return step_result(tl, cpu.foreign_share(before, cpu.sample(before.pid)))

    def completion_body(self, step: Step) -> dict:
        return {
            "prompt": self.prompt(step),
            "n_predict": self.convo.max_tokens,
            "temperature": 0,
            "seed": self.convo.seed,
            "ignore_eos": True,
            "stream": True,
            "cache_prompt": True,
        }

    def prompt(self, step: Step) -> str:
        """Our renderer's prompt text for the step, through the model's own chat template."""
        from agentport.api.anthropic import decode_messages
        from agentport.chat.render import render
        from agentport.chat.template import ChatTemplate

        if self.template is None:
            props = get_json(self.url, "/props") or {}
            bos, eos = props.get("bos_token", ""), props.get("eos_token", "")
            self.template = ChatTemplate(props.get("chat_template"), bos, eos)
        return render(decode_messages(self.convo.body(step)), self.template).text

    def snapshot(self, key: str) -> None:
        """Keep ours' /api/ps and the cache lines of /metrics, for the record."""
        if self.spec.kind != OURS:
            return
        self.record[f"ps_{key}"] = get_json(self.url, "/api/ps") or {}
        text = get_text(self.url, "/metrics")
        lines = [ln for ln in text.splitlines() if "cache" in ln and not ln.startswith("#")]
        self.record[f"metrics_{key}"] = lines


def step_result(tl: metrics.Timeline, foreign: float | None) -> dict:
    return {
        "ttft_s": metrics.ttft(tl),
        "e2e_s": metrics.e2e(tl),
        "prompt_tokens": tl.prompt_tokens,
        "cached_tokens": tl.cached_tokens,
        "cache_read_share": metrics.cache_read_share(tl),
        "output_tokens": tl.output_tokens,
        "foreign_cpu_share": foreign,
    }


def run_side(side: Side, steps: Sequence[Step], log: Log = stderr_log) -> list[dict]:
    """Every step on one server, restarting it where a step says so; the server is stopped."""
    results: list[dict] = []
    side.start()
    try:
        for step in steps:
            if step.restart_before:
                side.snapshot("before_restart")
                side.stop()
                side.start()
            try:
                results.append(side.send(step))
            except AgentportError as exc:
                tail = side.target.log_tail() if side.target else ""
                raise ApiError(f"{side.spec.name} failed at {step.label}: {exc}\n{tail}") from exc
            log(f"{side.spec.name:>12} {step.label:<32} {_fmt(results[-1])}")
        side.snapshot("end")
    finally:
        side.stop()
    return results


def _fmt(result: dict) -> str:
    ttft = "n/a" if result["ttft_s"] is None else f"{result['ttft_s']:8.2f} s"
    foreign = result["foreign_cpu_share"]
    other = "" if foreign is None else f", others {foreign:.0%} CPU"
    return f"TTFT {ttft}, prompt {result['prompt_tokens']}, cached {result['cached_tokens']}{other}"


# ---------------------------------------------------------------------------- the run


def prepare(cfg: AgentLoopConfig, opts: ServerOptions) -> tuple[Conversation, list[int], dict]:
    """Fit the conversation to the token targets and count every step's prompt, on a throwaway
    server of ours (its own home, so the measured one starts cold); fixes `opts.parallel` to
    what its memory plan chose when it was 0."""
    counter = start(TargetSpec("calibration", OURS, "anthropic"), opts)

    def count(body: dict) -> int:
        return int(post_json(counter.url, "/v1/messages/count_tokens", body)["input_tokens"])

    try:
        sizes, calibration = calibrate(count, cfg.tokens, cfg.seed)
        convo = Conversation(sizes, cfg.seed, cfg.max_tokens)
        counts = [count(convo.body(step)) for step in scenario_steps(cfg.turns)]
        calibration["ps"] = get_json(counter.url, "/api/ps") or {}
    finally:
        stop_process(counter.process)  # type: ignore[arg-type]
    models = calibration["ps"].get("models") or [{}]
    opts.parallel = opts.parallel or int(models[0].get("parallel") or 1)
    return convo, counts, calibration


def run_agent_loop(
    cfg: AgentLoopConfig, opts: ServerOptions, out: Path, log: Log = stderr_log
) -> dict:
    """Calibrate, run every side, write the record after each (so a cut-off run keeps what it
    measured); the record."""
    steps, stamp = scenario_steps(cfg.turns), time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        extra = ("--cache-prompt", *opts.llama_extra)
        opts = replace(opts, workdir=Path(tmp), llama_extra=extra)
        convo, counts, calibration = prepare(cfg, opts)
        log(f"calibrated: {calibration['sizes']}")
        record = _new_record(cfg, opts, steps, counts, calibration)
        for name in cfg.sides:
            side = Side(name, opts, convo, cfg.request_timeout)
            record["results"][name] = run_side(side, steps, log)
            record["servers"][name] = side.record
            markdown = render_markdown(record)
            write_outputs(record, markdown, out, lambda p: plot(record, p), stamp)
    return record


def _new_record(cfg, opts: ServerOptions, steps, counts, calibration) -> dict:
    config = {**asdict(cfg), "threads": opts.threads, "ctx": opts.ctx, "parallel": opts.parallel}
    config["agentport_env"], config["llama_extra"] = opts.agentport_env, list(opts.llama_extra)
    record = new_record("agent-loop", config, REPO_ROOT)
    record["model"] = model_facts(opts.model_path)
    opts.n_ctx_train = record["model"]["n_ctx_train"]  # llama-server stretches as ours does
    record.update(calibration=calibration, steps=[asdict(s) for s in steps], servers={})
    record["prompt_tokens"] = counts
    return record


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
        count = counts[index] if index < len(counts) else None
        rows.append([
            step.label, count,
            ours, _get(results, OURS, index, "cached_tokens"),
            llama, _get(results, LLAMA, index, "cached_tokens"),
            _ratio(ours, cold), _ratio(llama, cold), _ratio(ours, llama),
        ])  # fmt: skip
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
        f"Agent loop, {record['model']['file']}: a Claude Code-shaped prefix of "
        f"{record['calibration']['prefix_tokens']} tokens "
        f"({record['calibration']['sizes']['tools']} tools), {cfg['turns']} turns adding a tool "
        f"call and a ~{cfg['tokens']['result']}-token result each; {cfg['threads']} threads, "
        f"{cfg['parallel']} parallel x {cfg['ctx']} context, max_tokens {cfg['max_tokens']}, "
        "temperature 0. TTFT and cached tokens as bench/README.md defines them.",
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
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for (side, rows), color in zip(record["results"].items(), ("C0", "C1"), strict=False):
        for is_turn, draw in ((True, ax.plot), (False, ax.scatter)):
            points = [
                (i + 1, row["ttft_s"])
                for i, (step, row) in enumerate(zip(steps, rows, strict=False))
                if (step.kind == "turn") == is_turn and row["ttft_s"] is not None
            ]
            if points:
                style = {"marker": "o", "label": side} if is_turn else {"marker": "s"}
                draw(*zip(*points, strict=True), color=color, **style)
    names = [str(s.turn) if s.kind == "turn" else _short(s.kind) for s in steps]
    ax.set_xticks([i + 1 for i in range(len(steps))], names)
    ax.set_yscale("log")
    ax.set_xlabel("turn of session 1 (then: second session, session 1 resumes, after restart)")
    ax.set_ylabel("time to first token, s")
    ax.set_title(f"{record['model']['file']}, prefix {record['calibration']['prefix_tokens']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _short(kind: str) -> str:
    return {"second_session": "s2", "resume": "s1", "restart": "restart"}.get(kind, kind)
