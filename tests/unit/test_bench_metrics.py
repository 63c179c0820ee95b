"""The benchmark's metric definitions on synthetic event timelines, and the drivers' folding of
each dialect's stream into a timeline."""

from __future__ import annotations

import pytest

from agentport.bench import metrics
from agentport.bench.drivers import (
    anthropic_event,
    completion_event,
    loopback,
    ollama_event,
    openai_event,
    payloads,
)
from agentport.bench.metrics import Timeline, percentile, relative_spread, summarize
from agentport.bench.prompts import chat_prompt, tagged
from agentport.bench.scenarios import load
from agentport.bench.scenarios.load import LoadConfig, alternate
from agentport.bench.targets import (
    ServerOptions,
    Target,
    TargetSpec,
    agentport_environment,
    llama_args,
    parse_target,
)
from agentport.errors import ApiError, InvalidRequestError


def timeline(sent: float, deltas: list[float], end: float | None = None, **counts) -> Timeline:
    tl = Timeline(sent, list(deltas), end)
    tl.prompt_tokens = counts.get("prompt")
    tl.output_tokens = counts.get("output")
    return tl


STEADY = timeline(0.0, [0.5, 0.6, 0.7, 0.8, 0.9], 1.0, prompt=100, output=5)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (metrics.ttft, 0.5),
        (metrics.tpot, 0.1),
        (metrics.decode_tps, 10.0),
        (metrics.e2e, 1.0),
        (metrics.prompt_tps, 200.0),
    ],
)
def test_steady_stream(fn, expected):
    assert fn(STEADY) == pytest.approx(expected)


def test_itl_is_the_gaps_between_deltas():
    assert metrics.itl(STEADY) == pytest.approx([0.1, 0.1, 0.1, 0.1])


def test_first_token_is_excluded_from_decode():
    # A slow first token (prefill) does not change the decode rate.
    tl = timeline(0.0, [3.0, 3.1, 3.2], 3.2, output=3)
    assert metrics.decode_tps(tl) == pytest.approx(10.0)
    assert metrics.ttft(tl) == pytest.approx(3.0)


def test_server_count_wins_over_coalesced_deltas():
    tl = timeline(0.0, [0.5, 0.7, 0.9], 1.0, output=5)  # 5 tokens in 3 frames
    assert tl.tokens == 5
    assert metrics.decode_tps(tl) == pytest.approx(10.0)
    assert metrics.tpot(tl) == pytest.approx(0.1)


def test_delta_count_without_a_server_count():
    tl = timeline(0.0, [0.5, 0.6, 0.7])
    assert tl.tokens == 3
    assert metrics.decode_tps(tl) == pytest.approx(10.0)
    assert metrics.e2e(tl) == pytest.approx(0.7)  # no end stamp: the last delta


@pytest.mark.parametrize("deltas", [[], [0.5], [0.5, 0.5]])
def test_no_decode_interval(deltas):
    tl = timeline(0.0, deltas, 1.0, output=len(deltas))
    assert metrics.decode_tps(tl) is None
    assert metrics.tpot(tl) is None


def test_empty_stream():
    tl = timeline(0.0, [], 2.0, prompt=10)
    assert metrics.ttft(tl) is None
    assert metrics.prompt_tps(tl) is None
    assert metrics.e2e(tl) == pytest.approx(2.0)


def test_prefill_rate_needs_an_engine_stamp():
    tl = timeline(1.0, [1.6], 2.0, prompt=512)
    assert metrics.prefill_tps(tl) is None
    tl.t_prefilled = 1.5
    assert metrics.prefill_tps(tl) == pytest.approx(1024.0)


def test_throughput_of_a_concurrent_batch():
    a = timeline(0.0, [0.5, 1.0], 1.0, output=10)
    b = timeline(0.5, [1.0, 2.0], 2.0, output=30)
    assert metrics.throughput([a, b]) == pytest.approx(40 / 2.0)


def test_samples_pool_itl_and_skip_missing_values():
    one = timeline(0.0, [0.2], 0.3, output=1)  # no decode interval
    out = metrics.samples([STEADY, one])
    assert out["ttft_s"] == pytest.approx([0.5, 0.2])
    assert out["decode_tps"] == pytest.approx([10.0])
    assert len(out["itl_s"]) == 4


def test_percentiles_interpolate():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_and_spread():
    s = summarize([10.0, 11.0, 12.0])
    assert s["median"] == 11.0 and s["n"] == 3
    assert s["p99"] == pytest.approx(11.98)
    assert summarize([]) is None
    assert relative_spread([10.0, 10.0]) == 0.0
    assert relative_spread([9.0, 10.0, 11.0]) == pytest.approx((10.8 - 9.2) / 2 / 10)
    assert relative_spread([5.0]) == 0.0


# ---------------------------------------------------------------------------- dialects


def test_anthropic_stream():
    tl = Timeline(0.0)
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 40}}},
        {"type": "content_block_start", "content_block": {"type": "thinking"}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "hm"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": ""}},
        {"type": "message_delta", "usage": {"output_tokens": 2}},
    ]
    for t, event in enumerate(events):
        anthropic_event(event, float(t), tl)
    assert tl.deltas == [2.0, 3.0]  # thinking counts as content; empty text does not
    assert (tl.prompt_tokens, tl.output_tokens) == (40, 2)


def test_anthropic_prompt_counts_cached_tokens():
    tl = Timeline(0.0)
    usage = {"input_tokens": 5, "cache_read_input_tokens": 95}
    anthropic_event({"type": "message_start", "message": {"usage": usage}}, 0.0, tl)
    assert tl.prompt_tokens == 100
    assert tl.cached_tokens == 95 and metrics.cache_read_share(tl) == 0.95


def test_llama_completion_stream():
    tl = Timeline(1.0)
    events = [
        {"content": "", "stop": False},
        {"content": "Hel", "stop": False},
        {"content": "lo", "stop": False},
        {"content": "", "stop": True, "tokens_predicted": 16,
         "timings": {"cache_n": 700, "prompt_n": 200}},
    ]  # fmt: skip
    for t, event in enumerate(events):
        completion_event(event, 3.0 + t, tl)
    assert tl.deltas == [4.0, 5.0] and metrics.ttft(tl) == 3.0
    assert (tl.prompt_tokens, tl.cached_tokens, tl.output_tokens) == (900, 700, 16)


def test_first_byte_and_cache_share_need_their_stamps():
    tl = Timeline(1.0)
    assert metrics.first_byte(tl) is None and metrics.cache_read_share(tl) is None
    tl.t_first_byte, tl.prompt_tokens, tl.cached_tokens = 1.25, 0, 0
    assert metrics.first_byte(tl) == 0.25 and metrics.cache_read_share(tl) is None


def test_openai_stream():
    tl = Timeline(0.0)
    chunks = [
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"reasoning_content": "so"}}]},
        {"choices": [{"delta": {"content": "Hi"}}]},
        {"choices": [{"delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}},
    ]
    for t, chunk in enumerate(chunks):
        openai_event(chunk, float(t), tl)
    assert tl.deltas == [1.0, 2.0]
    assert (tl.prompt_tokens, tl.output_tokens) == (12, 2)


def test_ollama_stream():
    tl = Timeline(0.0)
    lines = [
        {"message": {"role": "assistant", "content": "", "thinking": "x"}, "done": False},
        {"message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 2,
         "prompt_eval_count": 9},
    ]  # fmt: skip
    for t, line in enumerate(lines):
        ollama_event(line, float(t), tl)
    assert tl.deltas == [0.0, 1.0]
    assert (tl.prompt_tokens, tl.output_tokens) == (9, 2)


@pytest.mark.parametrize(
    ("fold", "payload"),
    [
        (anthropic_event, {"type": "error", "error": {"message": "boom"}}),
        (openai_event, {"error": {"message": "boom"}}),
        (ollama_event, {"error": "boom"}),
        (completion_event, {"error": {"code": 500}}),
    ],
)
def test_error_events_raise(fold, payload):
    with pytest.raises(ApiError):
        fold(payload, 0.0, Timeline(0.0))


def test_sse_and_ndjson_payloads():
    sse = [b"event: ping\n", b'data: {"a": 1}\n', b"\n", b": comment\n", b"data: [DONE]\n"]
    assert list(payloads(enumerate(sse), sse=True)) == [(1, {"a": 1})]
    ndjson = [b'{"b": 2}\n', b"\n"]
    assert list(payloads(enumerate(ndjson), sse=False)) == [(0, {"b": 2})]


def test_only_loopback_urls():
    assert loopback("http://127.0.0.1:8080") == ("127.0.0.1", 8080)
    for url in ("http://example.com:80", "https://127.0.0.1:1"):
        with pytest.raises(InvalidRequestError):
            loopback(url)


def test_prompts_are_deterministic_and_tagged_up_front():
    assert tagged("r0", 30) == tagged("r0", 30) != tagged("r1", 30)
    assert len(tagged("r0", 30).split()) == 31
    a, b = chat_prompt("r0 q0", 30, 16), chat_prompt("r1 q0", 30, 16)
    assert a.system.startswith("[r0 q0]") and a.user.startswith("[r0 q0]")
    assert a.system != b.system and a.max_tokens == 16


# ---------------------------------------------------------------------------- rounds


class FakeDriver:
    """Answers every prompt with a steady 10 tokens/s stream of max_tokens tokens."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def run(self, prompt) -> Timeline:
        self.prompts.append(prompt.system)
        deltas = [0.5 + 0.1 * i for i in range(prompt.max_tokens)]
        return timeline(0.0, deltas, deltas[-1], prompt=50, output=prompt.max_tokens)


def fake_target(name: str) -> Target:
    return Target(TargetSpec(name, "url", "openai", "http://127.0.0.1:1"), "", FakeDriver())


def test_alternate_counts_rounds_after_warmups():
    a, b = fake_target("a"), fake_target("b")
    results = alternate([a, b], LoadConfig(requests=2, tokens=4, rounds=3), log=lambda _: None)
    assert a.driver.prompts == b.driver.prompts  # the same prompts, round by round
    assert len(a.driver.prompts) == 2 * 4 and len(set(a.driver.prompts)) == 8
    assert results["a"]["samples"]["decode_tps"] == pytest.approx([10.0] * 6)
    assert len(results["a"]["round_medians"]["decode_tps"]) == 3
    assert results["a"]["wrong_token_count"] == [] and results["a"]["discarded_rounds"] == 0


def test_alternate_reruns_rounds_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch):
    shares = iter([0.0, 0.0, 0.5, 0.0] + [0.0] * 10)  # warm-up a b, r0 a (busy) b, r1 ...
    real = load.measure

    def measure(target, cfg, label):
        return load.Measured(real(target, cfg, label).timelines, next(shares), None)

    monkeypatch.setattr(load, "measure", measure)
    a, b = fake_target("a"), fake_target("b")
    cfg = LoadConfig(tokens=4, rounds=2, max_foreign=0.1)
    results = alternate([a, b], cfg, log=lambda _: None)
    assert results["a"]["discarded_rounds"] == 1
    assert len(results["b"]["round_medians"]["decode_tps"]) == 2
    assert results["a"]["foreign_cpu"] == [0.0, 0.0]


# ---------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agentport", TargetSpec("agentport", "agentport", "openai")),
        ("agentport:anthropic", TargetSpec("agentport", "agentport", "anthropic")),
        ("llama-server", TargetSpec("llama-server", "llama-server", "openai")),
        (
            "ollama=http://127.0.0.1:11434,ollama",
            TargetSpec("ollama", "url", "ollama", "http://127.0.0.1:11434"),
        ),
        (
            "vllm=http://127.0.0.1:8000/",
            TargetSpec("vllm", "url", "openai", "http://127.0.0.1:8000"),
        ),
    ],
)
def test_target_specs(text: str, expected: TargetSpec):
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["nginx", "agentport:grpc", "x=http://10.0.0.1:80,openai"])
def test_bad_target_specs(text: str):
    with pytest.raises(InvalidRequestError):
        parse_target(text)


def test_llama_server_gets_the_same_context_and_threads(tmp_path):
    opts = ServerOptions(tmp_path / "m.gguf", threads=3, ctx=8192, n_ctx_train=8192)
    args = llama_args(opts, 9999)
    assert args[args.index("-c") + 1] == "8192" and args[args.index("-t") + 1] == "3"
    assert "--rope-scaling" not in args
    opts.ctx = 32768  # past the trained context: the same YaRN stretch as agentport's planner
    args = llama_args(opts, 9999)
    assert args[args.index("--rope-scale") + 1] == "4"


def test_started_servers_get_a_clean_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTPORT_KEEP_ALIVE", "0")
    monkeypatch.setenv("AGENTPORT_PARALLEL", "7")
    opts = ServerOptions(tmp_path / "m.gguf", parallel=0, agentport_env={"AGENTPORT_X": "1"})
    env = agentport_environment(opts, 9999, tmp_path)
    assert "AGENTPORT_KEEP_ALIVE" not in env and "AGENTPORT_PARALLEL" not in env
    assert env["AGENTPORT_HOST"] == "127.0.0.1:9999" and env["AGENTPORT_X"] == "1"
    opts.parallel = 2
    assert agentport_environment(opts, 9999, tmp_path)["AGENTPORT_PARALLEL"] == "2"
