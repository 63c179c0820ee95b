"""`agentport bench`: the benchmark harness on the command line.

One subcommand per scenario of `agentport.bench.scenarios`: `engine` (engines called directly,
like llama-bench), `serve` (N requests at concurrency C against one target), `compare`
(several targets alternating, each as a ratio to a reference, gated with `--baseline`),
`decode` and `concurrency` (compare runs with their own settings), `agent-loop`, `claude-shape`
and `tool-calls`; `report` renders earlier records together, `run` runs the standard set and
`llama-server` builds or finds llama.cpp's server. Every run writes a JSON record and a markdown
table (and, where it has one, a PNG plot) under `--out`.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from agentport.cli.console import err_console, fail, reporting

bench_app = typer.Typer(
    help="Benchmarks: engines, servers side by side, reports and the regression gate.",
    no_args_is_help=True,
)

REGRESSION_EXIT = 3
DEFAULT_OUT = Path("bench/results")

ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="GGUF file (default: the embedded model).")
]
ModelNameOpt = Annotated[
    str, typer.Option(help="Model name sent to servers (agentport serves the embedded one).")
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="Threads for every engine and server (default: cores).")
]
CtxOpt = Annotated[int, typer.Option(help="Context per sequence for every server and engine.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Directory for the JSON, markdown and PNG.")]
ToolsOpt = Annotated[
    int,
    typer.Option(help="Claude Code-shaped tools offered with tool_choice auto (a lazy grammar)."),
]
CopyOpt = Annotated[int, typer.Option(help="MiB copied per measurement of memory bandwidth.")]
LlamaBinOpt = Annotated[
    Path | None,
    typer.Option(help="llama-server binary (default: built in the user's cache)."),
]
ForeignOpt = Annotated[
    str | None,
    typer.Option(
        help="Run a round again when other processes took more of the CPU than this (10%)."
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="agentport[:dialect], llama-server[:dialect] or NAME=URL,DIALECT "
        "(dialect: openai, anthropic, ollama). Repeat for several.",
    ),
]


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, so the servers it started are stopped too."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _model_path(model: Path | None) -> Path:
    from agentport.store.embedded import packaged_gguf

    path = model or packaged_gguf()
    if path is None:
        fail("no model: pass --model FILE.gguf (the embedded model package is not installed)")
    if not path.is_file():
        fail(f"no such model file: {path}")
    return path


def _threads(threads: int | None) -> int:
    from agentport.engines.llamacpp import default_threads

    return threads or default_threads()


def _emit(record: dict, out: Path) -> None:
    from agentport.bench.report import render_markdown, write_record

    paths = write_record(record, out)
    typer.echo(render_markdown([record]))
    err_console.print(f"record: {paths['json']} (.md, .png)", markup=False, soft_wrap=True)


def _gate(record: dict, baseline: Path | None, max_regression: str) -> None:
    if baseline is None:
        return
    from agentport.bench.gate import gate, parse_threshold, render
    from agentport.bench.report import load_record

    result = gate(record, load_record(baseline), parse_threshold(max_regression))
    typer.echo(render(result))
    if result.failed:
        raise typer.Exit(code=REGRESSION_EXIT)


def _http_run(targets, model, model_name, threads, ctx, llama_bin, reference, copy_mib, parallel=1):
    from agentport.bench.scenarios.load import HttpRun
    from agentport.bench.targets import ServerOptions, parse_target

    specs = [parse_target(t) for t in targets]
    names = [s.name for s in specs]
    if reference is not None and reference not in names:
        fail(f"--reference {reference} is not one of the targets ({', '.join(names)})")
    server = ServerOptions(
        _model_path(model), model_name, _threads(threads), ctx, 0, parallel, llama_bin
    )
    return HttpRun(specs, server, reference, copy_mib)


def _share(text: str | None) -> float | None:
    from agentport.bench.gate import parse_threshold

    return None if text is None else parse_threshold(text)


def _default_reference(targets: list[str]) -> str:
    names = [t.partition("=")[0].partition(":")[0] for t in targets]
    return "llama-server" if "llama-server" in names else names[-1]


@bench_app.command("engine")
def engine_command(
    engine: Annotated[
        list[str] | None, typer.Option("--engine", help="llamacpp or mlx; repeat for both.")
    ] = None,
    pp: Annotated[int, typer.Option(help="Prompt tokens of a prompt-processing run.")] = 512,
    tg: Annotated[int, typer.Option(help="Tokens of a generation run.")] = 128,
    reps: Annotated[int, typer.Option(help="Counted runs of each.")] = 3,
    warmup: Annotated[int, typer.Option(help="Uncounted runs first.")] = 1,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 4096,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Prompt processing and generation of engines called directly, like llama-bench."""
    from agentport.bench.scenarios.engine import EngineConfig, EngineRun, run_engines

    run = EngineRun(engine or ["llamacpp"], _model_path(model), _threads(threads), ctx, copy_mib)
    with _stoppable(), reporting():
        record = run_engines(run, EngineConfig(pp, tg, reps, warmup))
    _emit(record, out)


@bench_app.command("serve")
def serve_command(
    target: Annotated[
        str, typer.Option(help="agentport[:dialect], llama-server[:dialect] or NAME=URL,DIALECT.")
    ] = "agentport",
    requests: Annotated[int, typer.Option(help="Requests per round.")] = 8,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 1,
    tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 128,
    prompt_words: Annotated[int, typer.Option(help="Words of each prompt.")] = 100,
    rounds: Annotated[int, typer.Option(help="Counted rounds.")] = 1,
    warmup: Annotated[int, typer.Option(help="Uncounted rounds first.")] = 1,
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = "smollm2:135m",
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 8192,
    llama_bin: LlamaBinOpt = None,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """N requests at concurrency C against one server, in its dialect."""
    from agentport.bench.scenarios.load import LoadConfig, run_http

    with _stoppable(), reporting():
        foreign = _share(max_foreign_cpu)
        cfg = LoadConfig(requests, concurrency, tokens, prompt_words, rounds, warmup, foreign)
        run = _http_run(
            [target], model, model_name, threads, ctx, llama_bin, None, copy_mib, concurrency
        )
        record = run_http("serve", run, cfg)
    _emit(record, out)


@bench_app.command("compare")
def compare_command(
    target: TargetOpt = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Target the others are shown as ratios of (default: llama-server)."),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Counted rounds, alternating targets.")] = 5,
    warmup: Annotated[int, typer.Option(help="Uncounted rounds first.")] = 1,
    requests: Annotated[int, typer.Option(help="Requests per target and round.")] = 1,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 1,
    tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 128,
    prompt_words: Annotated[int, typer.Option(help="Words of each prompt.")] = 100,
    tools: ToolsOpt = 0,
    baseline: Annotated[
        Path | None, typer.Option(help="A recorded run to gate this one against.")
    ] = None,
    max_regression: Annotated[
        str, typer.Option(help="Regression allowed beyond the run-to-run spread.")
    ] = "5%",
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = "smollm2:135m",
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 8192,
    llama_bin: LlamaBinOpt = None,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Several targets in one run, alternating A B A B; exit 3 on a regression past --baseline."""
    from agentport.bench.scenarios.load import LoadConfig

    targets = target or ["agentport", "llama-server"]
    with _stoppable(), reporting():
        cfg = LoadConfig(requests, concurrency, tokens, prompt_words, rounds, warmup)
        cfg.max_foreign, cfg.tools = _share(max_foreign_cpu), tools
        run = _http_run(
            targets, model, model_name, threads, ctx, llama_bin,
            reference or _default_reference(targets), copy_mib, concurrency,
        )  # fmt: skip
    _compare_and_gate("compare", run, cfg, out, baseline, max_regression)


def _compare_and_gate(scenario, run, cfg, out: Path, baseline, max_regression: str) -> None:
    from agentport.bench.scenarios.load import run_http

    with _stoppable(), reporting():
        record = run_http(scenario, run, cfg)
    _emit(record, out)
    with reporting():
        _gate(record, baseline, max_regression)


@bench_app.command("decode")
def decode_command(
    target: TargetOpt = None,
    reference: Annotated[
        str | None, typer.Option(help="Target the others are shown as ratios of.")
    ] = None,
    rounds: Annotated[int, typer.Option(help="Counted rounds, alternating targets.")] = 5,
    warmup: Annotated[int, typer.Option(help="Uncounted rounds first.")] = 1,
    tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 256,
    prompt_words: Annotated[int, typer.Option(help="Words of each prompt.")] = 40,
    tools: ToolsOpt = 0,
    baseline: Annotated[
        Path | None, typer.Option(help="A recorded decode run to gate this one against.")
    ] = None,
    max_regression: Annotated[
        str, typer.Option(help="Regression allowed beyond the run-to-run spread.")
    ] = "5%",
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = "smollm2:135m",
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 32768,
    llama_bin: LlamaBinOpt = None,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Single-stream decode rate, agentport vs llama-server: one request a round, long output,
    a 32k context (YaRN-stretched on both sides where the model was trained shorter)."""
    from agentport.bench.scenarios.load import LoadConfig

    targets = target or ["agentport", "llama-server"]
    with _stoppable(), reporting():
        cfg = LoadConfig(1, 1, tokens, prompt_words, rounds, warmup, _share(max_foreign_cpu))
        cfg.tools = tools
        run = _http_run(
            targets, model, model_name, threads, ctx, llama_bin,
            reference or _default_reference(targets), copy_mib,
        )  # fmt: skip
    _compare_and_gate("decode", run, cfg, out, baseline, max_regression)


def _stream_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        fail(f"--streams takes positive integers separated by commas, got {text!r}")
    return counts


@bench_app.command("concurrency")
def concurrency_command(
    target: TargetOpt = None,
    reference: Annotated[
        str | None, typer.Option(help="Target the others are shown as ratios of.")
    ] = None,
    streams: Annotated[str, typer.Option(help="Stream counts, e.g. 1,2,4,8.")] = "1,2,4,8",
    rounds: Annotated[int, typer.Option(help="Counted rounds per stream count.")] = 3,
    warmup: Annotated[int, typer.Option(help="Uncounted rounds first.")] = 1,
    tokens: Annotated[int, typer.Option(help="Tokens generated per stream.")] = 64,
    prompt_words: Annotated[int, typer.Option(help="Words of each prompt.")] = 100,
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = "smollm2:135m",
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 4096,
    llama_bin: LlamaBinOpt = None,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Aggregate throughput and TTFT at 1..N concurrent streams, every server with N slots."""
    from agentport.bench.report import write_outputs
    from agentport.bench.scenarios.concurrency import (
        ConcurrencyConfig,
        render_scaling,
        run_concurrency,
    )

    targets = target or ["agentport", "llama-server"]
    counts = _stream_counts(streams)
    with _stoppable(), reporting():
        foreign = _share(max_foreign_cpu)
        cfg = ConcurrencyConfig(counts, tokens, prompt_words, rounds, warmup, foreign)
        run = _http_run(
            targets, model, model_name, threads, ctx, llama_bin,
            reference or _default_reference(targets), copy_mib,
        )  # fmt: skip
        records = run_concurrency(run, cfg)
    for record in records:
        _emit(record, out)
    text = render_scaling(records)
    typer.echo(text)
    summary = {"scenario": "concurrency-scaling", "records": records}
    paths = write_outputs(summary, text, out)
    err_console.print(f"scaling: {paths['md']}", markup=False, soft_wrap=True)


@bench_app.command("report")
def report_command(
    files: Annotated[list[Path], typer.Argument(help="Records written by earlier runs.")],
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Render earlier records together: one table, one plot."""
    import time

    from agentport.bench.report import load_record, plot, render_markdown

    with reporting():
        records = [load_record(path) for path in files]
    text = render_markdown(records)
    typer.echo(text)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".md").write_text(text)
    plot(records, stem.with_suffix(".png"))
    err_console.print(f"report: {stem}.md (.png)", markup=False, soft_wrap=True)


@bench_app.command("run")
def run_command(
    baseline: Annotated[
        Path | None, typer.Option(help="A recorded compare run to gate this one against.")
    ] = None,
    max_regression: Annotated[
        str, typer.Option(help="Regression allowed beyond the run-to-run spread.")
    ] = "5%",
    rounds: Annotated[int, typer.Option(help="Counted rounds of the comparison.")] = 5,
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    llama_bin: LlamaBinOpt = None,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """The standard set: engines (llama.cpp, MLX where it imports), then agentport vs llama-server.

    Exits 3 when --baseline shows a regression.
    """
    from agentport.bench.scenarios.engine import EngineConfig, EngineRun, run_engines
    from agentport.bench.scenarios.load import LoadConfig, run_http

    path, n = _model_path(model), _threads(threads)
    with _stoppable(), reporting():
        _emit(run_engines(EngineRun(["llamacpp", "mlx"], path, n), EngineConfig()), out)
        run = _http_run(
            ["agentport", "llama-server"],
            path,
            "smollm2:135m",
            n,
            8192,
            llama_bin,
            "llama-server",
            256,
        )
        cfg = LoadConfig(rounds=rounds, max_foreign=_share(max_foreign_cpu))
        record = run_http("compare", run, cfg)
    _emit(record, out)
    with reporting():
        _gate(record, baseline, max_regression)


def _env_pairs(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for text in pairs or []:
        name, sep, value = text.partition("=")
        if not sep or not name.startswith("AGENTPORT_"):
            fail(f"--agentport-env takes AGENTPORT_NAME=value, got {text!r}")
        env[name] = value
    return env


@bench_app.command("agent-loop")
def agent_loop_command(
    prefix_tokens: Annotated[int, typer.Option(help="System prompt + tools, in tokens.")] = 20000,
    turns: Annotated[int, typer.Option(help="Turns of the first session.")] = 10,
    result_tokens: Annotated[int, typer.Option(help="Tokens per tool_result.")] = 500,
    user_tokens: Annotated[int, typer.Option(help="Session 2's user message.")] = 300,
    reminder_tokens: Annotated[int, typer.Option(help="Session 2's system reminder.")] = 1500,
    max_tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 16,
    parallel: Annotated[
        int, typer.Option(help="Sequences per server (0: what our memory plan picks).")
    ] = 0,
    side: Annotated[
        list[str] | None, typer.Option("--side", help="agentport or llama-server; repeatable.")
    ] = None,
    agentport_env: Annotated[
        list[str] | None, typer.Option(help="More AGENTPORT_NAME=value for ours; repeatable.")
    ] = None,
    llama_arg: Annotated[
        list[str] | None, typer.Option(help="More llama-server arguments (--llama-arg=-x).")
    ] = None,
    request_timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 1800.0,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 32768,
    llama_bin: LlamaBinOpt = None,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """TTFT per turn of a Claude Code-shaped tool loop, then a second session and a restart."""
    from agentport.bench.scenarios.agent_loop import SIDES, AgentLoopConfig, run_agent_loop
    from agentport.bench.scenarios.conversation import TokenTargets
    from agentport.bench.targets import ServerOptions

    sides = tuple(s for s in SIDES if s in (side or SIDES))
    if turns < 1 or prefix_tokens < 500 or not sides or set(side or SIDES) - set(SIDES):
        fail("--turns >= 1, --prefix-tokens >= 500, --side agentport or llama-server")
    tokens = TokenTargets(prefix_tokens, result_tokens, user_tokens, reminder_tokens)
    cfg = AgentLoopConfig(tokens, turns, max_tokens, sides=sides, request_timeout=request_timeout)
    opts = ServerOptions(_model_path(model), threads=_threads(threads), ctx=ctx, parallel=parallel)
    opts.llama_bin, opts.agentport_env = llama_bin, _env_pairs(agentport_env)
    opts.llama_extra = tuple(llama_arg or ())
    with _stoppable(), reporting():
        record = run_agent_loop(cfg, opts, out)
    from agentport.bench.scenarios.agent_loop import render_markdown

    typer.echo(render_markdown(record))


@contextmanager
def _server_at(url: str | None, threads: int | None) -> Iterator[str]:
    """``url`` (loopback only), else our own server started for the run and stopped after."""
    import tempfile

    from agentport.bench.drivers import loopback
    from agentport.bench.targets import ServerOptions, TargetSpec, started

    if url is not None:
        loopback(url)
        yield url.rstrip("/")
        return
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        opts = ServerOptions(_model_path(None), threads=_threads(threads), workdir=Path(tmp))
        with started([TargetSpec("agentport", "agentport", "openai")], opts) as (target,):
            yield target.url


UrlOpt = Annotated[
    str | None, typer.Option(help="A running server on 127.0.0.1 (default: start our own).")
]


def _names(given: list[str] | None, known: tuple[str, ...], option: str) -> list[str]:
    if given and set(given) - set(known):
        fail(f"{option} takes {', '.join(known)}")
    return [name for name in known if name in (given or known)]


@bench_app.command("tool-calls")
def tool_calls_command(
    data: Annotated[Path | None, typer.Option(help="BFCL-format JSONL cases.")] = None,
    answers: Annotated[Path | None, typer.Option(help="BFCL possible_answer JSONL.")] = None,
    url: UrlOpt = None,
    model_name: Annotated[
        list[str] | None, typer.Option("--model-name", help="Model to ask; repeatable.")
    ] = None,
    dialect: Annotated[
        list[str] | None, typer.Option(help="anthropic, openai, ollama; repeatable.")
    ] = None,
    tool_choice: Annotated[
        list[str] | None, typer.Option(help="auto, required; repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N cases.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per answer at most.")] = 256,
    stream: Annotated[bool, typer.Option(help="Stream answers (clients assemble).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 120.0,
    threads: ThreadsOpt = None,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Tool-call validity on BFCL-format cases, through the official clients of each dialect."""
    from agentport.bench.report import write_outputs
    from agentport.bench.scenarios.bfcl import load_cases
    from agentport.bench.scenarios.tool_calls import (
        DEFAULT_DATA,
        DIALECTS,
        TOOL_CHOICES,
        ToolCallsRun,
        render_markdown,
        run_tool_calls,
    )

    path = data or DEFAULT_DATA
    if not path.is_file():
        fail(f"no cases at {path}: pass --data FILE.jsonl")
    run = ToolCallsRun(
        model_name or ["smollm2:135m"],
        _names(dialect, DIALECTS, "--dialect"),
        _names(tool_choice, TOOL_CHOICES, "--tool-choice"),
        temperature, max_tokens, stream, timeout,
    )  # fmt: skip
    with _stoppable(), reporting():
        cases = load_cases(path, answers, limit)
        with _server_at(url, threads) as base:
            record = run_tool_calls(run, base, cases, path)
    text = render_markdown(record)
    typer.echo(text)
    paths = write_outputs(record, text, out)
    err_console.print(f"record: {paths['json']} (.md)", markup=False, soft_wrap=True)


@bench_app.command("claude-shape")
def claude_shape_command(
    url: UrlOpt = None,
    prefix_words: Annotated[int, typer.Option(help="System prose + tool descriptions.")] = 10000,
    result_words: Annotated[int, typer.Option(help="Words of turn 2's tool_result.")] = 300,
    max_tokens: Annotated[int, typer.Option(help="Tokens generated per turn.")] = 16,
    threads: ThreadsOpt = None,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Turn 1 and turn 2 of a Claude Code-shaped request: first byte, TTFT, cache reuse."""
    from agentport.bench.report import write_outputs
    from agentport.bench.scenarios.claude_shape import (
        ClaudeShapeConfig,
        render_markdown,
        run_claude_shape,
    )

    cfg = ClaudeShapeConfig(prefix_words, result_words, max_tokens)
    with _stoppable(), reporting(), _server_at(url, threads) as base:
        record = run_claude_shape(cfg, base)
    text = render_markdown(record)
    typer.echo(text)
    paths = write_outputs(record, text, out)
    err_console.print(f"record: {paths['json']} (.md)", markup=False, soft_wrap=True)


@bench_app.command("llama-server")
def llama_server_command() -> None:
    """Print the path of llama.cpp's llama-server, building it first when it is not there."""
    from agentport.bench.llama_server import ensure_llama_server

    with _stoppable(), reporting():
        path = ensure_llama_server()
    typer.echo(str(path))
