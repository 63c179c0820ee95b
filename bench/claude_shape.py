"""A Claude Code-shaped request, two turns: what an agent feels on turn 1 and turn 2.

Builds the request Claude Code sends (24 tool definitions, about 64 KB of JSON; a long system
prompt as blocks, the first a billing line whose hash changes per request; user text blocks with
system reminders; a mid-conversation `system` message), streams turn 1, then turn 2 with an
assistant `tool_use` and a user `tool_result` added, and reports per turn: time to the first
byte, time to the first content token, input tokens and `cache_read_input_tokens`.

    .venv/bin/python bench/claude_shape.py --url http://127.0.0.1:11434 [--target-tokens 20000]

Works against any server with the Anthropic Messages API (ours, or llama-server's).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid

import httpx

VOCABULARY = (
    "the file tool agent code test function user change error result repository branch commit "
    "review build module import return value string list object type check path run command "
    "output line edit search read write create delete update project config server request "
    "response stream token model context prompt cache system message block"
)
WORDS = VOCABULARY.split()


def prose(rng: random.Random, n_words: int) -> str:
    sentences, words = [], 0
    while words < n_words:
        length = rng.randint(8, 20)
        sentence = " ".join(rng.choice(WORDS) for _ in range(length))
        sentences.append(sentence.capitalize() + ".")
        words += length
    return " ".join(sentences)


def tool(rng: random.Random, index: int) -> dict:
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
        "description": prose(rng, 330),
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": properties,
            "required": ["file_path"],
            "additionalProperties": False,
        },
    }


def first_turn(system_words: int, seed: int) -> dict:
    rng = random.Random(seed)
    tools = [tool(rng, i) for i in range(24)]
    reminder = f"<system-reminder>{prose(rng, 120)}</system-reminder>"
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "temperature": 0,
        "system": [
            {"type": "text", "text": billing()},
            {"type": "text", "text": "You are Claude Code, a coding agent.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": prose(rng, system_words),
             "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": reminder},
                                         {"type": "text", "text": "Fix the failing test."}]},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": "Start by reading the test file."},
        ],
        "metadata": {"user_id": json.dumps({"session_id": str(uuid.uuid4())})},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": []},
        "output_config": {"effort": "medium"},
    }  # fmt: skip


def billing() -> str:
    return f"x-anthropic-billing-header: cc_version=2.1.328; cch={uuid.uuid4().hex[:5]};"


def second_turn(body: dict, result_words: int, seed: int) -> dict:
    rng = random.Random(seed + 1)
    body = json.loads(json.dumps(body))
    body["system"][0]["text"] = billing()
    call = {"type": "tool_use", "id": "toolu_01", "name": "Tool00",
            "input": {"file_path": "tests/test_app.py"}}  # fmt: skip
    result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": prose(rng, result_words)}
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": "Reading it."}, call]},
        {"role": "user", "content": [result]},
    ]
    return body


def stream_turn(client: httpx.Client, body: dict, max_tokens: int) -> dict:
    body = body | {"max_tokens": max_tokens}
    started = time.perf_counter()
    report = {"first_byte_s": None, "first_token_s": None, "usage": {}}
    with client.stream("POST", "/v1/messages?beta=true", json=body, headers=HEADERS) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            now = time.perf_counter() - started
            if report["first_byte_s"] is None:
                report["first_byte_s"] = now
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            kind = data.get("type")
            if kind == "content_block_delta" and report["first_token_s"] is None:
                report["first_token_s"] = now
            elif kind == "message_start":
                report["usage"].update(data["message"]["usage"])
            elif kind == "message_delta":
                report["usage"].update(data["usage"])
    report["total_s"] = time.perf_counter() - started
    return report


HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219",
           "x-api-key": "bench"}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:11434")
    parser.add_argument("--system-words", type=int, default=2500)
    parser.add_argument("--result-words", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    body = first_turn(args.system_words, args.seed)
    with httpx.Client(base_url=args.url, timeout=1800) as client:
        counted = client.post("/v1/messages/count_tokens", json=body, headers=HEADERS).json()
        print(f"count_tokens: {counted}", flush=True)
        one = stream_turn(client, body, args.max_tokens)
        print(f"turn 1: {json.dumps(one)}", flush=True)
        two = stream_turn(client, second_turn(body, args.result_words, args.seed), args.max_tokens)
        print(f"turn 2: {json.dumps(two)}", flush=True)
    reused = two["usage"].get("cache_read_input_tokens", 0) / max(one["usage"]["input_tokens"], 1)
    ratio = two["first_token_s"] / one["first_token_s"]
    print(f"turn 2 reuses {reused:.1%} of turn 1's input; time to first token ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
