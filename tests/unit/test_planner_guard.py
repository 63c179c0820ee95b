"""The guard's decisions: evict idle models (LRU first), fewer slots, a q8_0 KV cache, a shorter
context (with a note below the agent floor), or a refusal that says what would fit; YaRN; and
the tier table built from the shipped agent model shapes."""

from __future__ import annotations

import pytest

from agentport.errors import InvalidRequestError
from agentport.planner.estimate import estimate_memory
from agentport.planner.gguf_meta import ModelShape
from agentport.planner.guard import AGENT_FLOOR, DoesNotFit, LoadRequest, plan_load
from agentport.planner.tiers import Q4_K_M_BITS_PER_WEIGHT, agent_models, tier_table

MIB = 1 << 20
GIB = 1 << 30

SMOLLM2 = ModelShape(
    "llama", 30, 9, 3, 64, 8192, 98_362_432, name="SmolLM2", n_embd=576, n_vocab=49152,
    n_ff=1536, weights_bytes=96_576_768, parameter_count=134_515_008, quantization="Q4_1",
)  # fmt: skip


def total(n_ctx: int, parallel: int = 1, kv_type: str = "f16") -> int:
    return estimate_memory(SMOLLM2, n_ctx, parallel=parallel, kv_type=kv_type).total


@pytest.mark.parametrize(
    "budget,parallel,kv_type,n_ctx",
    [
        (total(32768, 4), 4, "f16", 32768),  # everything fits
        (total(32768, 4) - 1, 2, "f16", 32768),  # 4 slots do not: 2
        (total(32768, 2) - 1, 1, "f16", 32768),
        (total(32768, 1) - 1, 1, "q8_0", 32768),  # then q8_0
        (total(32768, 1, "q8_0") - 1, 1, "q8_0", 32512),  # then a shorter context
        (total(4096, 1, "q8_0"), 1, "q8_0", 4096),
        (total(2048, 1, "q8_0"), 1, "q8_0", 2048),
    ],
)
def test_auto_adaptation_order(budget, parallel, kv_type, n_ctx):
    plan = plan_load(SMOLLM2, LoadRequest(), budget)
    assert (plan.parallel, plan.kv_type, plan.n_ctx) == (parallel, kv_type, n_ctx)
    assert plan.estimate.total <= budget == plan.budget
    assert plan.evict == []


def test_shrunk_context_is_the_longest_that_fits():
    budget = total(20000, 1, "q8_0")
    plan = plan_load(SMOLLM2, LoadRequest(), budget)
    assert plan.n_ctx % 256 == 0
    assert plan.estimate.total <= budget < total(plan.n_ctx + 256, 1, "q8_0")


def test_notes_say_what_was_adapted():
    plan = plan_load(SMOLLM2, LoadRequest(), total(16384, 1, "q8_0"))
    assert plan.notes[0] == "1 parallel slot: 4 do not fit"
    assert plan.notes[1] == "q8_0 KV cache: an f16 one does not fit"
    assert plan.notes[2].startswith("context shrunk from 32768 to 16384 tokens")
    assert f"below the agent floor of {AGENT_FLOOR}" in plan.notes[2]


def test_no_floor_note_above_the_floor():
    plan = plan_load(SMOLLM2, LoadRequest(n_ctx=65536, floor=32768), total(40000, 1, "q8_0"))
    assert 32768 <= plan.n_ctx < 65536
    assert "below the agent floor" not in plan.notes[-1]


def test_evicts_least_recently_used_idle_models_first():
    idle = [("oldest", 300 * MIB), ("older", 300 * MIB), ("recent", 300 * MIB)]
    budget = total(32768, 4) - 500 * MIB
    plan = plan_load(SMOLLM2, LoadRequest(), budget, idle)
    assert plan.evict == ["oldest", "older"]
    assert (plan.parallel, plan.kv_type, plan.n_ctx) == (4, "f16", 32768)
    assert plan.budget == budget + 600 * MIB
    assert plan.notes == []


def test_evicts_before_it_drops_slots():
    plan = plan_load(SMOLLM2, LoadRequest(parallel=4), 100 * MIB, [("idle", 4 * GIB)])
    assert plan.evict == ["idle"] and plan.parallel == 4


def test_nothing_to_evict_when_it_fits():
    plan = plan_load(SMOLLM2, LoadRequest(), 10 * GIB, [("idle", GIB)])
    assert plan.evict == []


def test_explicit_slots_are_kept_over_the_kv_type_and_a_context_above_the_floor():
    request = LoadRequest(n_ctx=65536, parallel=2)
    plan = plan_load(SMOLLM2, request, total(40000, 2, "q8_0"))
    assert (plan.parallel, plan.kv_type) == (2, "q8_0")
    assert AGENT_FLOOR <= plan.n_ctx < 65536


def test_explicit_slots_drop_only_when_they_cannot_fit_at_the_floor():
    plan = plan_load(SMOLLM2, LoadRequest(parallel=4), total(32768, 3, "q8_0"))
    assert (plan.parallel, plan.kv_type, plan.n_ctx) == (3, "q8_0", 32768)
    assert plan.notes[0] == "3 parallel slots instead of 4: they do not fit"


def test_explicit_kv_type_is_kept():
    plan = plan_load(SMOLLM2, LoadRequest(kv_type="f16"), total(16384))
    assert plan.kv_type == "f16" and plan.n_ctx == 16384
    plan = plan_load(SMOLLM2, LoadRequest(kv_type="q4_0", parallel=1), 10 * GIB)
    assert plan.kv_type == "q4_0" and plan.notes == []


def test_without_flash_attention_no_q8_0():
    plan = plan_load(SMOLLM2, LoadRequest(flash_attention=False), total(32768) - 1)
    assert plan.kv_type == "f16" and plan.n_ctx < 32768
    with pytest.raises(InvalidRequestError):
        plan_load(SMOLLM2, LoadRequest(kv_type="q8_0", flash_attention=False), 10 * GIB)


def test_never_below_2048_tokens_refuses_with_what_would_fit():
    with pytest.raises(DoesNotFit) as caught:
        plan_load(SMOLLM2, LoadRequest(), total(2048, 1, "q8_0") - 2, [("idle", 1)])
    error = caught.value
    assert isinstance(error, InvalidRequestError) and error.kind == "invalid_request"
    assert "even with 2048 tokens of context, 1 slot and KV cache type q8_0" in error.message
    assert "quant of it would fit" in error.message
    assert error.needed == total(2048, 1, "q8_0")


def test_refusal_suggests_a_smaller_model_when_no_quant_helps():
    with pytest.raises(DoesNotFit) as caught:
        plan_load(SMOLLM2, LoadRequest(), 150 * MIB)
    assert "A smaller model would fit: at most about 45M parameters" in caught.value.message


def test_refusal_with_no_memory_at_all():
    with pytest.raises(DoesNotFit) as caught:
        plan_load(SMOLLM2, LoadRequest(), 0)
    assert "Free memory" in caught.value.message


def test_short_request_below_2048_is_kept():
    plan = plan_load(SMOLLM2, LoadRequest(n_ctx=1024, floor=1024), 10 * GIB)
    assert plan.n_ctx == 1024 and plan.notes == []


@pytest.mark.parametrize(
    "n_ctx,factor,text", [(32768, 4.0, "yarn x4 from 8192"), (8192, 1.0, None), (4096, 1.0, None)]
)
def test_yarn_beyond_the_trained_context(n_ctx, factor, text):
    plan = plan_load(SMOLLM2, LoadRequest(n_ctx=n_ctx, floor=min(n_ctx, AGENT_FLOOR)), 10 * GIB)
    assert (plan.yarn_factor, plan.rope_scaling) == (factor, text)


def test_yarn_follows_the_shrunk_context():
    plan = plan_load(SMOLLM2, LoadRequest(), total(16384, 1, "q8_0"))
    assert plan.yarn_factor == plan.n_ctx / 8192


def test_no_yarn_when_the_model_scales_its_own_rope():
    shape = ModelShape("llama", 30, 9, 3, 64, 8192, 1, has_rope_scaling=True)
    assert plan_load(shape, LoadRequest(), 10 * GIB).rope_scaling is None


@pytest.mark.parametrize(
    "request_",
    [LoadRequest(n_ctx=0), LoadRequest(parallel=0), LoadRequest(kv_type="q5_1")],
)
def test_invalid_requests(request_):
    with pytest.raises(InvalidRequestError):
        plan_load(SMOLLM2, request_, 10 * GIB)


# --- tiers -----------------------------------------------------------------------------------


def test_agent_models_weights_are_computed():
    models = {model.shape.name: model for model in agent_models()}
    assert len(models) == 7
    llama = models["Llama 3.1 8B"].shape
    assert llama.weights == int(8_030_261_248 * Q4_K_M_BITS_PER_WEIGHT / 8)
    assert 4.5 * GIB < llama.weights < 4.7 * GIB  # llama.cpp's table: 4.58 GiB
    assert llama.kv_bytes_per_token() == 32 * 8 * 128 * 2 * 2


def test_tier_table_16_24_48():
    rows = {row.tag or row.name: row for row in tier_table()}
    verdicts = {name: [cell.verdict for cell in row.cells] for name, row in rows.items()}
    assert verdicts["qwen2.5-coder:7b"] == ["fits", "fits", "fits"]
    assert verdicts["qwen2.5-coder:14b"][0].startswith("no: ")
    assert verdicts["qwen2.5-coder:14b"][1:] == ["fits", "fits"]
    for row in rows.values():
        assert [cell.machine_gb for cell in row.cells] == [16, 24, 48]
        assert all(cell.fits for cell in row.cells[1:])
        for cell in row.cells:
            assert cell.plan is None or cell.plan.estimate.total <= cell.budget


def test_tier_table_other_machines():
    rows = tier_table(machines_gb=(8,), floor=8192)
    assert [cell.floor for cell in rows[0].cells] == [8192]
    assert rows[0].cells[0].budget == 4 * GIB  # 8 GiB less a 4 GiB reserve
