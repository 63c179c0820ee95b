"""Tests of bench/common.py's pure helpers: percentiles, SSE parsing, stream timing, tables."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "common.py"


def _load_common():
    spec = importlib.util.spec_from_file_location("bench_common", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


common = _load_common()


def _frame(event: str, payload: dict):
    return common.SseFrame(event, json.dumps(payload))


# ---------------------------------------------------------------------------- stats


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0], 50, 2.0),
        ([3.0, 1.0, 2.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 90, 4.6),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 100, 5.0),
    ],
)
def test_percentile(values, q, expected):
    assert common.percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_bad_input(values, q):
    with pytest.raises(ValueError):
        common.percentile(values, q)


def test_summarize():
    s = common.summarize([10.0, 30.0, 20.0])
    assert s == {"n": 3, "median": 20.0, "p10": 12.0, "p90": 28.0, "min": 10.0, "max": 30.0}


# ---------------------------------------------------------------------------- SSE


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["event: ping\n", 'data: {"type": "ping"}\n', "\n"], [("ping", '{"type": "ping"}')]),
        (["data: {}\r\n", "\r\n"], [("message", "{}")]),
        (["data:x\n", "\n"], [("message", "x")]),
        (["data: a\n", "data: b\n", "\n"], [("message", "a\nb")]),
        ([": keep-alive\n", "\n", "event: e\n", "data: 1\n"], [("e", "1")]),
        (["event: a\n", "data: 1\n", "\n", "data: 2\n", "\n"], [("a", "1"), ("message", "2")]),
        (["event: orphan\n", "\n"], []),
    ],
)
def test_iter_sse(lines, expected):
    frames = [(f.event, f.data) for f in common.iter_sse(lines)]
    assert frames == expected


# ---------------------------------------------------------------------------- stream timing


def _anthropic_frames(texts: list[str], output_tokens: int | None, t0: float = 1.0):
    frames = [
        _frame("message_start", {"type": "message_start", "message": {}}),
        _frame("content_block_start", {"type": "content_block_start", "index": 0}),
        _frame("ping", {"type": "ping"}),
    ]
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        frames.append(
            _frame("content_block_delta", {"type": "content_block_delta", "delta": delta})
        )
    frames.append(_frame("content_block_stop", {"type": "content_block_stop", "index": 0}))
    usage = {} if output_tokens is None else {"output_tokens": output_tokens}
    frames.append(_frame("message_delta", {"type": "message_delta", "usage": usage}))
    frames.append(_frame("message_stop", {"type": "message_stop"}))
    # the three header frames arrive at t0, deltas one per 0.1 s after, the tail with the last
    times = [t0] * 3 + [t0 + 0.1 * (i + 1) for i in range(len(texts))]
    times += [times[-1]] * (len(frames) - len(times))
    return list(zip(times, frames, strict=True))


def test_anthropic_stats_use_reported_tokens():
    stats = common.anthropic_stream_stats(_anthropic_frames(["a", "b", "c", "d", "e"], 9), 0.5)
    assert stats.deltas == 5
    assert stats.tokens == 9
    assert "".join(stats.text) == "abcde"
    assert stats.ttft == pytest.approx(0.6)
    assert stats.decode_rate == pytest.approx(8 / 0.4)


def test_anthropic_stats_fall_back_to_delta_count():
    stats = common.anthropic_stream_stats(_anthropic_frames(["a", "b", "c"], None), 0.0)
    assert stats.tokens == 3
    assert stats.decode_rate == pytest.approx(2 / 0.2)


def test_anthropic_stats_skip_empty_and_non_text_deltas():
    frames = _anthropic_frames(["a", "", "b"], 2)
    json_delta = {"type": "input_json_delta", "partial_json": "{}"}
    frames.insert(
        4,
        (1.05, _frame("content_block_delta", {"type": "content_block_delta", "delta": json_delta})),
    )
    stats = common.anthropic_stream_stats(frames, 0.0)
    assert stats.deltas == 2
    assert (stats.t_first, stats.t_last) == pytest.approx((1.1, 1.3))


def test_anthropic_error_event_raises():
    frames = [(1.0, _frame("error", {"type": "error", "error": {"message": "boom"}}))]
    with pytest.raises(RuntimeError, match="boom"):
        common.anthropic_stream_stats(frames, 0.0)


def test_single_delta_has_no_rate():
    stats = common.anthropic_stream_stats(_anthropic_frames(["a"], 1), 0.0)
    assert stats.decode_rate is None


def test_no_delta_has_no_ttft():
    stats = common.anthropic_stream_stats(_anthropic_frames([], 0), 0.0)
    assert stats.ttft is None
    assert stats.decode_rate is None


def test_llama_completion_stats():
    frames = [
        (1.0, _frame("message", {"content": "He", "stop": False})),
        (1.1, _frame("message", {"content": "", "stop": False})),
        (1.2, _frame("message", {"content": "llo", "stop": False})),
        (1.4, _frame("message", {"content": "!", "stop": False})),
        (
            1.4,
            _frame(
                "message",
                {
                    "content": "",
                    "stop": True,
                    "tokens_predicted": 5,
                    "timings": {"predicted_per_second": 12.5},
                },
            ),
        ),
    ]
    stats = common.llama_completion_stream_stats(frames, 0.9)
    assert (stats.deltas, stats.tokens, stats.server_tps) == (3, 5, 12.5)
    assert stats.decode_rate == pytest.approx(4 / 0.4)
    assert stats.ttft == pytest.approx(0.1)


def test_llama_completion_error_raises():
    frames = [(1.0, _frame("message", {"error": {"message": "bad"}}))]
    with pytest.raises(RuntimeError, match="bad"):
        common.llama_completion_stream_stats(frames, 0.0)


# ---------------------------------------------------------------------------- URLs, tables


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("http://localhost:1/", ("localhost", 1)),
        ("http://127.0.0.1", ("127.0.0.1", 80)),
    ],
)
def test_split_loopback_url(url, expected):
    assert common.split_loopback_url(url) == expected


@pytest.mark.parametrize("url", ["http://example.com:80", "https://127.0.0.1:1", "127.0.0.1:80"])
def test_split_loopback_url_refuses_others(url):
    with pytest.raises(ValueError):
        common.split_loopback_url(url)


def test_markdown_table():
    table = common.markdown_table(["a", "b", "c"], [["x", 1.234, None], ["y", 2, 3.0]])
    assert table.splitlines() == [
        "| a | b | c |",
        "|---|---|---|",
        "| x | 1.23 |  |",
        "| y | 2 | 3.00 |",
    ]
