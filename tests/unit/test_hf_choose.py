"""Choosing the GGUF file of a Hugging Face repository for a quant: a table of file lists."""

from __future__ import annotations

import pytest

from agentport.errors import InvalidRequestError, NotFoundError
from agentport.store.hf import choose_gguf, is_split, quant_of

REPO = "hf.co/owner/Model-GGUF"
README = "README.md"

CHOSEN = [
    # (files, quant asked, file chosen)
    ([README, "Model-Q4_K_M.gguf", "Model-Q8_0.gguf"], "q4_k_m", "Model-Q4_K_M.gguf"),
    ([README, "Model-Q4_K_M.gguf", "Model-Q8_0.gguf"], "q8_0", "Model-Q8_0.gguf"),
    (["model.q4_k_m.gguf", "model.q8_0.gguf"], "Q8_0", "model.q8_0.gguf"),
    (["Model-Q4_K_S.gguf", "Model-Q4_K_M.gguf", "Model-Q4_K.gguf"], "q4_k", "Model-Q4_K.gguf"),
    (["Model-Q4_K_S.gguf", "Model-Q4_K_M.gguf"], "q4_k_s", "Model-Q4_K_S.gguf"),
    (["Model-IQ4_XS.gguf", "Model-Q4_0.gguf"], "iq4_xs", "Model-IQ4_XS.gguf"),
    (["Model-IQ4_XS.gguf", "Model-Q4_0.gguf"], "q4_0", "Model-Q4_0.gguf"),
    (
        ["llama-2-7b-chat.Q5_K_M.gguf", "llama-2-7b-chat.Q2_K.gguf"],
        "q2_k",
        "llama-2-7b-chat.Q2_K.gguf",
    ),
    (
        ["Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Qwen2.5-0.5B-Instruct-f16.gguf"],
        "f16",
        "Qwen2.5-0.5B-Instruct-f16.gguf",
    ),
    (["Model-BF16.gguf", "Model-F16.gguf"], "bf16", "Model-BF16.gguf"),
    (["Q4_K_M/Model-Q4_K_M.gguf", "Q8_0/Model-Q8_0.gguf"], "q8_0", "Q8_0/Model-Q8_0.gguf"),
    (["mmproj-Model-F16.gguf", "Model-F16.gguf"], "f16", "Model-F16.gguf"),
    (["Model-Q4_K_M-imat.gguf", "Model-Q4_K_M.gguf"], "q4_k_m", "Model-Q4_K_M.gguf"),
    # a single GGUF is taken for the default quant, or whatever is asked if its name has no quant
    ([README, "SmolLM2-135M-Instruct.Q4_1.gguf"], "q4_k_m", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ([README, "model.gguf"], "q8_0", "model.gguf"),
    # a whole file is preferred to a split one of the same quant
    (
        ["M-Q8_0-00001-of-00002.gguf", "M-Q8_0-00002-of-00002.gguf", "M-Q8_0.gguf"],
        "q8_0",
        "M-Q8_0.gguf",
    ),
]


@pytest.mark.parametrize(("files", "quant", "chosen"), CHOSEN)
def test_the_file_for_the_quant_is_chosen(files, quant, chosen):
    assert choose_gguf(files, quant, REPO) == chosen


REFUSED = [
    # (files, quant asked, error, words the message must hold)
    (
        ["M-Q4_K_M-00001-of-00002.gguf", "M-Q4_K_M-00002-of-00002.gguf", "M-Q8_0.gguf"],
        "q4_k_m",
        InvalidRequestError,
        ["split", "not supported"],
    ),
    (["Model-Q4_K_M.gguf", "Model-Q8_0.gguf"], "q5_k_m", NotFoundError, ["Q5_K_M", "Q4_K_M, Q8_0"]),
    (
        ["M-Q4_K_M-00001-of-00002.gguf", "M-Q4_K_M-00002-of-00002.gguf", "M-Q8_0.gguf"],
        "q6_k",
        NotFoundError,
        ["Q4_K_M (split, not supported)", "Q8_0"],
    ),
    (["Only-Q8_0.gguf"], "q2_k", NotFoundError, ["Q2_K", "available quants: Q8_0"]),
    ([README, "config.json", "model.safetensors"], "q4_k_m", NotFoundError, ["no GGUF file"]),
    (["mmproj-Model-F16.gguf"], "f16", NotFoundError, ["no GGUF file"]),
    ([], "q4_k_m", NotFoundError, ["no GGUF file", REPO]),
]


@pytest.mark.parametrize(("files", "quant", "error", "words"), REFUSED)
def test_a_missing_or_split_quant_is_a_clear_error(files, quant, error, words):
    with pytest.raises(error) as caught:
        choose_gguf(files, quant, REPO)
    for word in words:
        assert word in caught.value.message


@pytest.mark.parametrize(
    ("filename", "quant"),
    [
        ("Model-Q4_K_M.gguf", "Q4_K_M"),
        ("model.q8_0.gguf", "Q8_0"),
        ("Model-IQ2_XXS.gguf", "IQ2_XXS"),
        ("Model-Q4_0_4_4.gguf", "Q4_0_4_4"),
        ("Model-TQ1_0.gguf", "TQ1_0"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00003.gguf", "Q4_K_M"),
        ("sub/dir/Model-F16.gguf", "F16"),
        ("Qwen2.5-7B-Instruct.gguf", None),
        ("seq2seq-model.gguf", None),
    ],
)
def test_quant_of_a_file_name(filename, quant):
    assert quant_of(filename) == quant


def test_split_names():
    assert is_split("M-Q4_K_M-00001-of-00002.gguf")
    assert not is_split("M-Q4_K_M.gguf")
