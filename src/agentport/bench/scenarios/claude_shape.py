"""The claude-shape scenario: what an agent feels on turn 1 and turn 2 of a Claude Code-shaped
request (`conversation.Conversation`: 24 tools, a long system prompt, a per-request billing
block, system reminders, a mid-conversation `system` message), against any server with the
Anthropic Messages API. Per turn: time to first byte, TTFT, prompt and cached tokens and the
cache-read share (as `metrics.py` defines them); then turn 2's TTFT over turn 1's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from agentport.bench import metrics
from agentport.bench.drivers import HttpDriver
from agentport.bench.prompts import stderr_log
from agentport.bench.report import markdown_table, new_record
from agentport.bench.scenarios.conversation import MAX_TOOLS, MODEL, Conversation, Sizes, Step
from agentport.bench.scenarios.load import Log
from agentport.bench.targets import REPO_ROOT, post_json, server_version


@dataclass
class ClaudeShapeConfig:
    prefix_words: int = 10000  # system prose plus the 24 tool descriptions
    result_words: int = 300  # turn 2's tool_result
    max_tokens: int = 16
    seed: int = 7
    timeout: float = 1800.0


def turn_result(tl: metrics.Timeline) -> dict:
    return {
        "first_byte_s": metrics.first_byte(tl),
        "ttft_s": metrics.ttft(tl),
        "e2e_s": metrics.e2e(tl),
        "prompt_tokens": tl.prompt_tokens,
        "cached_tokens": tl.cached_tokens,
        "cache_read_share": metrics.cache_read_share(tl),
    }


def run_claude_shape(cfg: ClaudeShapeConfig, url: str, log: Log = stderr_log) -> dict:
    """Count turn 1's tokens, then stream turn 1 and turn 2 to ``url``; the record."""
    sizes = Sizes(MAX_TOOLS, cfg.prefix_words, cfg.result_words)
    convo = Conversation(sizes, cfg.seed, cfg.max_tokens)
    driver = HttpDriver(url, "anthropic", MODEL, cfg.timeout)
    record = new_record("claude-shape", asdict(cfg), REPO_ROOT)
    record["targets"] = [{"url": url, "version": server_version(url)}]
    first = convo.body(Step("turn", "turn 1", 1, 1))
    counted = post_json(url, "/v1/messages/count_tokens", first, cfg.timeout)
    record["count_tokens"] = counted.get("input_tokens")
    for turn in (1, 2):
        step = Step("turn", f"turn {turn}", 1, turn)
        tl = driver.send(convo.body(step), convo.headers(1))
        record["results"][step.label] = turn_result(tl)
        log(f"{step.label}: {record['results'][step.label]}")
    return record


def render_markdown(record: dict) -> str:
    rows = [
        [label, r["first_byte_s"], r["ttft_s"], r["prompt_tokens"], r["cached_tokens"],
         r["cache_read_share"]]
        for label, r in record["results"].items()
    ]  # fmt: skip
    headers = ("turn", "first byte s", "TTFT s", "prompt tokens", "cached", "cache-read share")
    lines = [
        f"Claude Code-shaped request, 24 tools, {record['count_tokens']} tokens counted for "
        f"turn 1 at {record['targets'][0]['url']}; TTFT and cache-read share as "
        "bench/README.md defines them.",
        "",
        markdown_table(headers, rows),
    ]
    one, two = record["results"].get("turn 1", {}), record["results"].get("turn 2", {})
    if one.get("ttft_s") and two.get("ttft_s") is not None:
        lines += ["", f"turn 2 TTFT / turn 1 TTFT: {two['ttft_s'] / one['ttft_s']:.3f}"]
    return "\n".join(lines) + "\n"
