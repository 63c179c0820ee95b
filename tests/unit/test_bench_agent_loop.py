"""Tests of the agent-loop scenario's pure logic: the Claude Code-shaped conversation, its
calibration, the step results and the report."""

from __future__ import annotations

import json

import pytest

from agentport.bench.metrics import Timeline
from agentport.bench.scenarios import agent_loop as bench
from agentport.bench.scenarios import conversation
from agentport.bench.scenarios.agent_loop import LLAMA, OURS
from agentport.errors import InvalidRequestError

SIZES = conversation.Sizes(
    tools=3, prefix_words=300, result_words=40, user_words=20, reminder_words=60
)


def _convo(**kwargs):
    return conversation.Conversation(SIZES, seed=7, **kwargs)


# ---------------------------------------------------------------------------- steps


def test_scenario_steps_turns_then_second_session_resume_and_restart():
    steps = conversation.scenario_steps(3)
    assert [(s.kind, s.session, s.turn, s.restart_before) for s in steps] == [
        ("turn", 1, 1, False),
        ("turn", 1, 2, False),
        ("turn", 1, 3, False),
        ("second_session", 2, 1, False),
        ("resume", 1, 4, False),
        ("restart", 1, 5, True),
    ]


def test_scenario_steps_refuses_no_turns():
    with pytest.raises(InvalidRequestError):
        conversation.scenario_steps(0)


@pytest.mark.parametrize(
    ("prefix_tokens", "tools"), [(500, 2), (4000, 5), (19200, 24), (20000, 24), (90000, 24)]
)
def test_tool_count(prefix_tokens, tools):
    assert conversation.tool_count(prefix_tokens) == tools


# ---------------------------------------------------------------------------- conversation


def _turn(convo, k):
    return convo.body(conversation.Step("turn", "", 1, k))


def test_each_turn_extends_the_previous_one_by_a_tool_call_and_its_result():
    convo = _convo()
    for k in range(1, 5):
        before, after = _turn(convo, k), _turn(convo, k + 1)
        assert after["messages"][: len(before["messages"])] == before["messages"]
        assistant, user = after["messages"][len(before["messages"]) :]
        call = assistant["content"][1]
        assert call["type"] == "tool_use"
        assert user["content"][0] == {
            "type": "tool_result",
            "tool_use_id": call["id"],
            "content": user["content"][0]["content"],
        }
        assert len(user["content"][0]["content"].split()) >= SIZES.result_words


def test_only_the_billing_block_changes_between_turns():
    convo = _convo()
    one, two = _turn(convo, 1), _turn(convo, 2)
    assert one["system"][1:] == two["system"][1:]
    assert one["tools"] == two["tools"]
    assert one["system"][0]["text"].startswith("x-anthropic-billing-header:")
    assert one["system"][0] != two["system"][0]


def test_the_first_turn_keeps_claude_code_shape():
    body = _turn(_convo(max_tokens=16), 1)
    assert body["max_tokens"] == 16 and body["temperature"] == 0 and body["stream"]
    assert body["ignore_eos"] is True
    assert len(body["tools"]) == SIZES.tools
    assert [m["role"] for m in body["messages"]] == ["user", "system", "user"]
    assert "<system-reminder>" in body["messages"][0]["content"][0]["text"]


def test_second_session_shares_the_prefix_and_has_its_own_opening():
    convo = _convo()
    one, two = _turn(convo, 1), convo.body(conversation.Step("second_session", "", 2, 1))
    assert two["system"][1:] == one["system"][1:] and two["tools"] == one["tools"]
    ask, remind = two["messages"][0]["content"]
    assert len(ask["text"].split()) >= SIZES.user_words
    assert remind["text"].startswith("<system-reminder>")
    assert len(remind["text"].split()) >= SIZES.reminder_words
    session = "x-claude-code-session-id"
    assert convo.headers(1)[session] != convo.headers(2)[session]
    assert json.loads(two["metadata"]["user_id"])["session_id"] == convo.session_ids[2]


def test_conversation_is_deterministic():
    assert _turn(_convo(), 3) == _turn(_convo(), 3)


def test_prefix_size_follows_the_word_count():
    small = conversation.Conversation(conversation.Sizes(3, 300), seed=1)
    large = conversation.Conversation(conversation.Sizes(3, 3000), seed=1)
    words = lambda c: len(json.dumps([c.system, c.tools]).split())  # noqa: E731
    assert words(large) > 5 * words(small)


def test_unknown_step_is_refused():
    with pytest.raises(InvalidRequestError):
        _convo().body(conversation.Step("turn", "", 3, 1))


# ---------------------------------------------------------------------------- calibration


@pytest.mark.parametrize(
    ("w1", "c1", "w2", "c2", "target", "expected"),
    [
        (1000, 3000, 500, 2000, 4000, 1500),  # 1000 + 2 tokens per word
        (100, 150, 200, 300, 600, 400),
        (10, 20, 20, 30, 5, 1),  # never below one word
    ],
)
def test_fit_linear(w1, c1, w2, c2, target, expected):
    assert conversation.fit_linear(w1, c1, w2, c2, target) == expected


def test_fit_linear_refuses_equal_probes():
    with pytest.raises(InvalidRequestError):
        conversation.fit_linear(10, 20, 10, 30, 100)


def test_calibrate_hits_the_targets_with_a_word_counting_server():
    def count(body: dict) -> int:  # a fake tokenizer: one token per word, 1.5 for results
        text = json.dumps([body["system"][1:], body["tools"], body["messages"]])
        results = sum(
            len(part["content"].split())
            for m in body["messages"]
            if isinstance(m["content"], list)
            for part in m["content"]
            if part.get("type") == "tool_result"
        )
        return len(text.split()) + results // 2

    targets = conversation.TokenTargets(prefix=4000)
    sizes, record = conversation.calibrate(count, targets)
    assert sizes.tools == 5
    assert abs(record["prefix_tokens"] - 4000) < 40
    assert record["tokens_per_word"] == pytest.approx(1.5, abs=0.02)
    assert abs(sizes.result_words * 1.5 - 500) < 5


# ---------------------------------------------------------------------------- step results


def test_step_result_reads_the_timeline():
    tl = Timeline(0.5, deltas=[5.0, 5.5], t_end=6.0, prompt_tokens=900, output_tokens=16)
    tl.cached_tokens = 850
    result = bench.step_result(tl, 0.25)
    assert result["ttft_s"] == 4.5 and result["e2e_s"] == 5.5
    assert (result["prompt_tokens"], result["cached_tokens"]) == (900, 850)
    assert result["cache_read_share"] == pytest.approx(850 / 900)
    assert result["foreign_cpu_share"] == 0.25


# ---------------------------------------------------------------------------- report


def _results(ours: list[float], llama: list[float], foreign: float = 0.0) -> dict:
    def rows(ttfts):
        return [
            {"ttft_s": t, "cached_tokens": 10 * i, "prompt_tokens": 100 + i,
             "foreign_cpu_share": foreign}
            for i, t in enumerate(ttfts)
        ]  # fmt: skip

    return {OURS: rows(ours), LLAMA: rows(llama)}


STEPS = conversation.scenario_steps(2)
COUNTS = [100, 101, 102, 103, 104]


def test_table_rows_ratios_to_ours_cold_turn_one():
    results = _results([100.0, 5.0, 10.0, 4.0, 20.0], [110.0, 10.0, 50.0, 60.0, 120.0])
    rows = bench.table_rows(STEPS, COUNTS, results)
    assert [r[0] for r in rows] == [s.label for s in STEPS]
    assert rows[1] == ["turn 2", 101, 5.0, 10, 10.0, 10, 0.05, 0.1, 0.5]
    assert rows[0][6] == 1.0


def test_table_rows_with_one_side_only():
    results = {OURS: _results([100.0, 5.0, 10.0, 4.0, 20.0], [])[OURS]}
    rows = bench.table_rows(STEPS, COUNTS, results)
    assert rows[1][4] is None and rows[1][8] is None


def test_acceptance_lines_met_and_not_met():
    results = _results([100.0, 5.0, 10.0, 4.0, 25.0], [110.0, 10.0, 50.0, 60.0, 120.0])
    lines = bench.acceptance_lines(STEPS, results)
    assert lines == [
        "turn 2: ours / ours cold turn 1 = 0.050 (bar 0.10): met.",
        "second session, turn 1: ours / ours cold turn 1 = 0.100 (bar 0.15): met.",
        "after restart, turn 4: ours / ours cold turn 1 = 0.250 (bar 0.20): NOT met.",
        "turn 2: ours / llama-server = 0.50 (bar 1.00): met.",
    ]


def test_warning_lines_flag_contention_and_token_mismatch():
    results = _results([100.0, 5.0, 10.0, 4.0, 25.0], [1.0] * 5, foreign=0.3)
    lines = bench.warning_lines(STEPS, [100, 101, 102, 999, 104], results)
    assert any("other processes" in line and OURS in line for line in lines)
    assert any("prompt tokens differ" in line and "103 vs 999" in line for line in lines)


def test_render_markdown_and_plot(tmp_path):
    record = {
        "config": {"turns": 2, "tokens": {"result": 500}, "threads": 2, "parallel": 1,
                   "ctx": 32768, "max_tokens": 16},
        "model": {"file": "m.gguf"},
        "calibration": {"prefix_tokens": 4001, "sizes": {"tools": 5}},
        "steps": [vars(s) for s in STEPS],
        "prompt_tokens": COUNTS,
        "results": _results([100.0, 5.0, 10.0, 4.0, 20.0], [110.0, 10.0, 50.0, 60.0, 120.0]),
    }  # fmt: skip
    text = bench.render_markdown(record)
    assert "| step | prompt tokens | ours TTFT s |" in text
    assert "4001 tokens (5 tools)" in text
    bench.plot(record, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
