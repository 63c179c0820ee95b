"""Tokenizing through a llama.cpp vocabulary, shared by the llama.cpp engine and the MLX engine's
GGUF tokenizer: prompt text to tokens (control tokens parsed or not) and the strings that
tokenize as control tokens."""

from __future__ import annotations

CONTROL_ATTRS = ("LLAMA_TOKEN_ATTR_CONTROL", "LLAMA_TOKEN_ATTR_UNKNOWN")  # parsed only as special


def tokenize(model, text: str, special: bool, add_bos: bool) -> list[int]:
    """`text`'s tokens from a llama-cpp-python `LlamaModel`; `special` parses control tokens'
    strings as those tokens."""
    return model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)


def wants_bos(model_adds_bos: bool, bos_text: str, text: str, start: bool) -> bool:
    """Whether a BOS goes before `text`: at the prompt's start, where the model wants one and
    the text does not begin with it already."""
    return start and model_adds_bos and not (bos_text and text.startswith(bos_text))


def control_texts(lib, model, vocab) -> tuple[str, ...]:
    """The text of every token that only special-token parsing produces (read once a model)."""
    flags = 0
    for name in CONTROL_ATTRS:
        flags |= getattr(lib, name)
    texts = []
    for token in range(lib.llama_vocab_n_tokens(vocab)):
        if lib.llama_vocab_get_attr(vocab, token) & flags:
            text = token_text(model, token)
            if text:
                texts.append(text)
    return tuple(texts)


def token_text(model, token: int) -> str:
    """One token's text, control tokens included; "" for no token (-1)."""
    if token < 0:
        return ""
    return model.detokenize([token], special=True).decode("utf-8", errors="replace")


def fim_texts(lib, model, vocab) -> tuple[str, str, str] | None:
    """The fill-in-the-middle markers (prefix, suffix, middle), or None without them."""
    ids = (
        lib.llama_vocab_fim_pre(vocab),
        lib.llama_vocab_fim_suf(vocab),
        lib.llama_vocab_fim_mid(vocab),
    )
    if min(ids) < 0:
        return None
    pre, suf, mid = (token_text(model, token) for token in ids)
    return pre, suf, mid
