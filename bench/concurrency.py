"""Concurrency benchmark: aggregate decode rate and TTFT at 1-8 streams, ours vs llama-server.

Owns the concurrent-streams comparison. For each stream count N both servers are started with
the same GGUF model (the embedded SmolLM2-135M by default), the same thread count, N parallel
sequences and the same context per sequence: ours with ``AGENTPORT_PARALLEL=N`` and
``AGENTPORT_CONTEXT_LENGTH=<ctx>``, llama-server with ``--parallel N -c <ctx * N>``. Each round
sends N streaming requests at once, every one with its own prompt (a tag at the front defeats
prefix caches), temperature 0, a fixed seed and end-of-sequence ignored, so each stream yields
exactly ``--tokens`` tokens. One uncounted warm-up round per server, then ``--repeats`` rounds
alternating ours, llama-server.

    python bench/concurrency.py [--streams 1,2,4,8] [--tokens 64] [--repeats 3] [--threads 2]

Aggregate decode rate of a round = sum over streams of (output tokens - 1) / (time of the last
stream's last content delta - time of the first stream's first content delta). Writes
``bench/results/concurrency.{md,json,png}`` and prints the table. Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from common import (
    LLAMA,
    LOOPBACK,
    OURS,
    RESULTS_DIR,
    SEED,
    SIDES,
    ServerProcess,
    StreamStats,
    anthropic_stream_stats,
    cpu_sample,
    foreign_cpu_share,
    free_port,
    http_get_json,
    http_post_json,
    llama_completion_stream_stats,
    markdown_table,
    percentile,
    stream_sse,
    wait_until,
)
from decode import ANTHROPIC_HEADERS, LLAMA_READY_PATHS, embedded_model_path, llama_version
from llama_server import ensure_llama_server

CONTENTION_SHARE = 0.10  # other processes' share of the CPU above which a round is flagged

# About 300 tokens with the SmolLM2 tokenizer; each request puts its own tag in front of it.
PASSAGE = (
    "Below is a description of a small harbour town. Read it, then continue the story in the "
    "same style, adding new characters and events. The town sits at the mouth of a cold river "
    "where it meets the northern sea. Its houses are painted red, yellow and blue so that "
    "fishermen can find their own roofs from the water when fog rolls in. A stone lighthouse "
    "stands on the rocks at the end of the breakwater; its keeper, an old woman named Maren, "
    "has climbed its hundred and twelve steps every evening for forty years. In the square "
    "there is a bakery that opens at four in the morning, a chandlery that sells rope, tar and "
    "brass fittings, and a tavern where the ferry captain tells the same three stories every "
    "night. In winter the harbour freezes at the edges and children skate between the moored "
    "boats. In summer the town fills with painters who try to capture the light on the water "
    "and mostly fail. The river brings timber from the forests upstream, and the sawmill's "
    "whistle marks noon. Once a year, on the longest night, the whole town walks to the "
    "lighthouse carrying lanterns, to remember the boats that did not come back. This year "
    "something is different: a ship nobody recognises has anchored outside the breakwater, "
    "showing no flag and no lights, and Maren has seen a figure on its deck signalling with a "
    "mirror in a pattern she almost remembers."
)

Prepare = Callable[[str, str], dict]
Send = Callable[[dict], StreamStats]


@dataclass
class Side:
    """One server under test: where it answers, how to build and send one request."""

    name: str
    url: str
    prepare: Prepare
    send: Send
    server: ServerProcess | None = None


# ---------------------------------------------------------------------------- arguments


def _stream_counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("stream counts must be positive integers")
    return counts


def _sides(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in SIDES for name in names):
        raise argparse.ArgumentTypeError(f"sides are a comma list of {', '.join(SIDES)}")
    return [name for name in SIDES if name in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=_stream_counts, default=[1, 2, 4, 8], help="e.g. 1,2,4,8")
    p.add_argument("--tokens", type=int, default=64, help="tokens generated per stream")
    p.add_argument("--repeats", type=int, default=3, help="counted rounds per server and N")
    p.add_argument("--warmup", type=int, default=1, help="uncounted rounds per server and N")
    p.add_argument("--threads", type=int, default=2, help="engine threads for both servers")
    p.add_argument("--ctx", type=int, default=4096, help="context per parallel sequence")
    p.add_argument("--sides", type=_sides, default=list(SIDES), help="ours,llama-server")
    p.add_argument("--model-path", type=Path, help="GGUF for llama-server (default: embedded)")
    p.add_argument("--ours-model", default="smollm2:135m", help="model name sent to our server")
    p.add_argument("--llama-bin", type=Path, help="llama-server binary (default: build or find)")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds per server")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait before each round for other processes to leave the CPU (0: no wait)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results are written")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- requests


def prompt_for(tag: str) -> tuple[str, str]:
    """System and user text of one stream; the tag leads both, so no two streams share a prefix."""
    return f"[{tag}] You are a storyteller.", f"[{tag}] {PASSAGE}"


def ours_side(url: str, model: str, tokens: int) -> tuple[Prepare, Send]:
    """Streaming ``POST /v1/messages`` (Anthropic) with ``ignore_eos`` and a fixed seed."""

    def prepare(system: str, user: str) -> dict:
        return {
            "model": model,
            "max_tokens": tokens,
            "stream": True,
            "temperature": 0,
            "seed": SEED,
            "ignore_eos": True,
            "system": system,
            "messages": [{"role": "user", "content": user}],
        }

    def send(body: dict) -> StreamStats:
        t_start = time.perf_counter()
        frames = stream_sse(url, "/v1/messages", body, ANTHROPIC_HEADERS)
        return anthropic_stream_stats(frames, t_start)

    return prepare, send


def llama_side(url: str, tokens: int) -> tuple[Prepare, Send]:
    """Streaming ``POST /completion`` of the chat-templated prompt, without the prompt cache."""

    def prepare(system: str, user: str) -> dict:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        rendered = http_post_json(url, "/apply-template", {"messages": messages})["prompt"]
        return {
            "prompt": rendered,
            "n_predict": tokens,
            "ignore_eos": True,
            "temperature": 0,
            "seed": SEED,
            "stream": True,
            "cache_prompt": False,
        }

    def send(body: dict) -> StreamStats:
        t_start = time.perf_counter()
        return llama_completion_stream_stats(stream_sse(url, "/completion", body), t_start)

    return prepare, send


def llama_prompt_tokens(side: Side) -> int:
    """Tokens in one stream's chat-templated prompt, counted by llama-server's tokenizer."""
    body = side.prepare(*prompt_for("n0 count s0"))
    answer = http_post_json(side.url, "/tokenize", {"content": body["prompt"]})
    return len(answer["tokens"])


# ---------------------------------------------------------------------------- servers


def start_ours(args: argparse.Namespace, parallel: int, home: Path) -> tuple[str, ServerProcess]:
    """``python -m agentport serve`` with N parallel sequences; ready once its model is loaded."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "AGENTPORT_HOST": f"{LOOPBACK}:{port}",
        "AGENTPORT_HOME": str(home),
        "AGENTPORT_THREADS": str(args.threads),
        "AGENTPORT_PARALLEL": str(parallel),
        "AGENTPORT_CONTEXT_LENGTH": str(args.ctx),
    }
    argv = [sys.executable, "-m", "agentport", "serve"]
    server = ServerProcess(OURS, argv, home / "agentport.log", env)
    url = f"http://{LOOPBACK}:{port}"
    wait_until(server, partial(_model_loaded, url), args.startup_timeout)
    return url, server


def start_llama(args: argparse.Namespace, parallel: int, logs: Path) -> tuple[str, ServerProcess]:
    """``llama-server`` with ``--parallel N`` and ``ctx * N`` cells, so each slot gets ``ctx``."""
    port = free_port()
    argv = [str(args.llama_bin), "-m", str(args.model_path), "--host", LOOPBACK]
    argv += ["--port", str(port), "-t", str(args.threads), "--parallel", str(parallel)]
    argv += ["-c", str(args.ctx * parallel)]
    server = ServerProcess(LLAMA, argv, logs / f"llama-server-{parallel}.log")
    url = f"http://{LOOPBACK}:{port}"
    wait_until(server, partial(_healthy, url), args.startup_timeout)
    return url, server


def _model_loaded(url: str) -> bool:
    return bool((http_get_json(url, "/api/ps") or {}).get("models"))


def _healthy(url: str) -> bool:
    return any(http_get_json(url, path) is not None for path in LLAMA_READY_PATHS)


def start_sides(args: argparse.Namespace, parallel: int, workdir: Path) -> list[Side]:
    """The servers named in ``--sides``, started for ``parallel`` streams (ours first)."""
    sides: list[Side] = []
    try:
        if OURS in args.sides:
            url, server = start_ours(args, parallel, workdir / f"home-{parallel}")
            prepare, send = ours_side(url, args.ours_model, args.tokens)
            sides.append(Side(OURS, url, prepare, send, server))
        if LLAMA in args.sides:
            url, server = start_llama(args, parallel, workdir)
            prepare, send = llama_side(url, args.tokens)
            sides.append(Side(LLAMA, url, prepare, send, server))
    except BaseException:
        stop_sides(sides)
        raise
    return sides


def stop_sides(sides: Sequence[Side]) -> None:
    for side in sides:
        if side.server is not None:
            side.server.stop()


# ---------------------------------------------------------------------------- rounds


def run_concurrently(send: Send, bodies: Sequence[dict]) -> list[StreamStats]:
    """Send every body on its own thread, all released together; re-raise the first failure."""
    results: list[StreamStats | BaseException | None] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = send(bodies[index])
        except BaseException as exc:  # travels to the caller as a value
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def round_metrics(streams: Sequence[StreamStats]) -> dict:
    """One round's aggregate decode rate, TTFTs and per-stream rates (see the module doc)."""
    if any(s.t_first is None or s.t_last is None for s in streams):
        raise RuntimeError("a stream produced no content")
    t0 = min(s.t_first for s in streams)
    window = max(s.t_last for s in streams) - t0
    after_first = sum(s.tokens - 1 for s in streams)
    ttfts = [s.ttft for s in streams]
    rates = [s.decode_rate for s in streams if s.decode_rate is not None]
    return {
        "agg_tps": after_first / window if window > 0 else None,
        "window_s": window,
        "ttft_median_s": percentile(ttfts, 50),
        "stream_tps_median": percentile(rates, 50) if rates else None,
        "streams": [
            {
                "tokens": s.tokens,
                "ttft_s": s.ttft,
                "decode_tps": s.decode_rate,
                "first_s": s.t_first - t0,
                "last_s": s.t_last - t0,
            }
            for s in streams
        ],
    }


def wait_for_quiet(server_pids: Sequence[int], limit: float) -> int:
    """Wait, in one-second samples, until other processes (not our servers, not this client)
    use at most ``CONTENTION_SHARE`` of the CPU, or ``limit`` seconds pass; return the number
    of busy samples waited through."""
    busy, started = 0, time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu_sample(server_pids)
        time.sleep(1.0)
        share = foreign_cpu_share(before, cpu_sample(server_pids), os.cpu_count() or 1)
        if share is None or share <= CONTENTION_SHARE:
            break
        if not busy:
            print(f"waiting for other processes ({share:.0%} of the CPU) ...", file=sys.stderr)
        busy += 1
    return busy


def run_round(side: Side, n: int, label: str) -> dict:
    """N concurrent streams on one server, each with its own tagged prompt."""
    bodies = [side.prepare(*prompt_for(f"{label} s{i}")) for i in range(n)]
    pids = [side.server.proc.pid] if side.server else []
    before = cpu_sample(pids)
    try:
        streams = run_concurrently(side.send, bodies)
    except Exception as exc:
        tail = side.server.log_tail() if side.server else ""
        raise RuntimeError(f"{side.name} failed at {n} streams, {label}: {exc}\n{tail}") from exc
    foreign = foreign_cpu_share(before, cpu_sample(pids), os.cpu_count() or 1)
    return {"run": label, **round_metrics(streams), "foreign_cpu_share": foreign}


def bench_streams(args: argparse.Namespace, n: int, workdir: Path) -> dict[str, dict]:
    """Start both servers for N streams, run warm-ups and alternating repeats, stop them."""
    sides = start_sides(args, n, workdir)
    out: dict[str, dict] = {side.name: {"rounds": []} for side in sides}
    try:
        for side in sides:  # for the record: what ours loaded, how long the prompts are
            if side.name == OURS:
                out[OURS]["ps"] = http_get_json(side.url, "/api/ps")
            else:
                out[LLAMA]["prompt_tokens"] = llama_prompt_tokens(side)
        labels = [f"warmup-{i}" for i in range(args.warmup)]
        labels += [f"r{i}" for i in range(args.repeats)]
        pids = [side.server.proc.pid for side in sides if side.server]
        for label in labels:
            for side in sides:
                waited = wait_for_quiet(pids, args.quiet_wait)
                record = run_round(side, n, f"n{n} {label}")
                record["run"], record["busy_wait_s"] = label, waited
                out[side.name]["rounds"].append(record)
                print(f"{side.name:>12} x{n} {label:>8}: {_fmt_round(record)}", file=sys.stderr)
    finally:
        stop_sides(sides)
    return out


def _fmt_round(record: dict) -> str:
    agg = record["agg_tps"]
    agg_text = "n/a" if agg is None else f"{agg:7.1f} tok/s"
    foreign = record.get("foreign_cpu_share")
    other = "" if foreign is None else f", other processes {foreign:.0%} CPU"
    return f"agg {agg_text}, ttft median {record['ttft_median_s'] * 1000:.0f} ms{other}"


# ---------------------------------------------------------------------------- summary


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return percentile(present, 50) if present else None


def summarize_rounds(rounds: Sequence[dict], tokens: int) -> dict:
    """Medians over the counted rounds, and the rounds where a stream had the wrong length."""
    counted = [r for r in rounds if not r["run"].startswith("warmup")]
    return {
        "agg_tps": _median([r["agg_tps"] for r in counted]),
        "ttft_s": _median([r["ttft_median_s"] for r in counted]),
        "stream_tps": _median([r["stream_tps_median"] for r in counted]),
        "rounds": len(counted),
        "max_foreign_cpu_share": _max([r.get("foreign_cpu_share") for r in counted]),
        "wrong_token_rounds": [
            r["run"] for r in rounds if any(s["tokens"] != tokens for s in r["streams"])
        ],
    }


def _max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table_rows(summary: dict[str, dict[int, dict]], counts: Sequence[int]) -> list[list]:
    """Rows of the main table: one per stream count."""
    ours, llama = summary.get(OURS, {}), summary.get(LLAMA, {})

    def get(side: dict, n: int, key: str) -> float | None:
        return side.get(n, {}).get(key)

    ours_one, llama_one = get(ours, 1, "agg_tps"), get(llama, 1, "agg_tps")
    rows = []
    for n in counts:
        o, ll = get(ours, n, "agg_tps"), get(llama, n, "agg_tps")
        o_ttft, l_ttft = get(ours, n, "ttft_s"), get(llama, n, "ttft_s")
        rows.append(
            [
                n,
                o,
                ll,
                _ratio(o, ll),
                None if o_ttft is None else o_ttft * 1000,
                None if l_ttft is None else l_ttft * 1000,
                _ratio(o, ours_one),
                _ratio(ll, llama_one),
                get(ours, n, "stream_tps"),
                get(llama, n, "stream_tps"),
            ]
        )
    return rows


TABLE_HEADERS = (
    "streams",
    "ours agg tok/s",
    "llama-server agg tok/s",
    "ratio",
    "ours TTFT ms",
    "llama-server TTFT ms",
    "ours scaling vs 1",
    "llama-server scaling vs 1",
    "ours per-stream tok/s",
    "llama-server per-stream tok/s",
)


def acceptance_line(summary: dict[str, dict[int, dict]]) -> str | None:
    """Issue 5's bar at 4 streams: ours >= 0.9x llama-server and above our own 1-stream rate."""
    ours, llama = summary.get(OURS, {}), summary.get(LLAMA, {})
    o4, o1 = ours.get(4, {}).get("agg_tps"), ours.get(1, {}).get("agg_tps")
    l4 = llama.get(4, {}).get("agg_tps")
    if o4 is None or l4 is None or o1 is None:
        return None
    ratio, scaling = o4 / l4, o4 / o1
    verdict = "met" if ratio >= 0.9 and scaling > 1 else "NOT met"
    return (
        f"At 4 streams: ours / llama-server = {ratio:.2f} (bar 0.90), ours 4 / 1 stream = "
        f"{scaling:.2f} (bar > 1.00): {verdict}."
    )


def contention_line(summary: dict[str, dict[int, dict]]) -> str | None:
    """A warning naming the (server, streams) whose counted rounds shared the CPU with others."""
    busy = [
        f"{side} x{n} ({s['max_foreign_cpu_share']:.0%})"
        for side, by_n in summary.items()
        for n, s in by_n.items()
        if (s.get("max_foreign_cpu_share") or 0) > CONTENTION_SHARE
    ]
    if not busy:
        return None
    return (
        f"WARNING: other processes took more than {CONTENTION_SHARE:.0%} of the CPU during "
        f"counted rounds of {', '.join(busy)}; those numbers are not reliable."
    )


def render_markdown(record: dict) -> str:
    """The header line, the table, the acceptance line and any warnings."""
    cfg = record["config"]
    summary = _int_keys(record["summary"])
    prompt = f" of {cfg['prompt_tokens']} tokens" if cfg.get("prompt_tokens") else ""
    lines = [
        f"Concurrent decode, {cfg['model']}: {cfg['tokens']} tokens per stream, "
        f"{cfg['threads']} threads, context {cfg['ctx']} per sequence, temperature 0, "
        f"ignore_eos, distinct prompts{prompt}; median of {cfg['repeats']} rounds after "
        f"{cfg['warmup']} warm-up. Aggregate = tokens after each stream's first / (last "
        "token of any stream - first token of any stream).",
        "",
        markdown_table(TABLE_HEADERS, table_rows(summary, cfg["streams"])),
        "",
    ]
    if line := acceptance_line(summary):
        lines.append(line)
    if line := contention_line(summary):
        lines.append(line)
    for side, by_n in summary.items():
        for n, s in by_n.items():
            if s["wrong_token_rounds"]:
                bad = ", ".join(s["wrong_token_rounds"])
                lines.append(f"WARNING: {side} at {n} streams: wrong token count in {bad}")
    return "\n".join(lines).rstrip() + "\n"


def _int_keys(summary: dict) -> dict[str, dict[int, dict]]:
    """Summary with stream counts as ints (JSON turns them into strings)."""
    return {side: {int(n): s for n, s in by_n.items()} for side, by_n in summary.items()}


def plot(record: dict, path: Path) -> None:
    """Aggregate tok/s against stream count, one line per server, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for side, by_n in _int_keys(record["summary"]).items():
        points = sorted((n, s["agg_tps"]) for n, s in by_n.items() if s["agg_tps"] is not None)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=side)
    counts = record["config"]["streams"]
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate decode tok/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{record['config']['model']}, {record['config']['threads']} threads")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def make_record(args: argparse.Namespace, runs: dict[str, dict[int, dict]]) -> dict:
    summary = {
        side: {n: summarize_rounds(data["rounds"], args.tokens) for n, data in by_n.items()}
        for side, by_n in runs.items()
    }
    return {
        "benchmark": "concurrency",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "streams": args.streams,
            "tokens": args.tokens,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "threads": args.threads,
            "ctx": args.ctx,
            "seed": SEED,
            "sides": args.sides,
            "model": args.model_path.name,
            "prompt_tokens": _prompt_tokens(runs),
            "llama_server_version": getattr(args, "llama_version", None),
            "endpoints": {OURS: "/v1/messages", LLAMA: "/completion"},
        },
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "summary": summary,
        "runs": runs,
    }


def _prompt_tokens(runs: dict[str, dict[int, dict]]) -> int | None:
    counts = [data["prompt_tokens"] for data in runs.get(LLAMA, {}).values()]
    return counts[0] if counts else None


def write_results(out_dir: Path, record: dict, markdown: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "concurrency.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / "concurrency.md").write_text(markdown)
    plot(record, out_dir / "concurrency.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.model_path = args.model_path or embedded_model_path()
    if LLAMA in args.sides:
        args.llama_bin = args.llama_bin or ensure_llama_server()
        args.llama_version = llama_version(args.llama_bin)
    runs: dict[str, dict[int, dict]] = {side: {} for side in args.sides}
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        try:
            for n in args.streams:
                for side, data in bench_streams(args, n, Path(tmp)).items():
                    runs[side][n] = data
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    record = make_record(args, runs)
    markdown = render_markdown(record)
    print(markdown)
    write_results(args.out_dir, record, markdown)
    print(f"results: {args.out_dir / 'concurrency.md'} (.json, .png)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
