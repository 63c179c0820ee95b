"""Grammar-constrained sampling for the llama.cpp engine, at the cost of unconstrained sampling.

Applying a grammar to the whole vocabulary costs a partial parse per token candidate: on a
49k-token vocabulary that is most of a second per token on a small CPU. So, as llama.cpp's own
server does, the token is sampled without the grammar first and the grammar checks that one
token; only when it refuses is the grammar applied to every candidate and the token sampled again.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from agentport.errors import InvalidRequestError


class GrammarGate:
    def __init__(self, lib, ctx, vocab, grammar: str) -> None:
        self._lib, self._ctx = lib, ctx
        self.sampler = lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self.sampler:
            raise InvalidRequestError("the output grammar could not be compiled")
        self._n_vocab = lib.llama_vocab_n_tokens(vocab)
        self._one = (lib.llama_token_data * 1)()
        self._one_array = lib.llama_token_data_array(self._one, 1, -1, False)
        self._all = (lib.llama_token_data * self._n_vocab)()
        self._all_array = lib.llama_token_data_array(self._all, self._n_vocab, -1, False)
        self._view = np.ctypeslib.as_array(self._all)
        self._ids = np.arange(self._n_vocab, dtype=np.int32)

    def choose(self, chain, token: int, logits_at: int) -> int:
        """`token` if the grammar allows it, else a token sampled under the grammar from the
        logits of batch position `logits_at`."""
        chosen = token if self._allows(token) else self._resample(chain, logits_at)
        self._lib.llama_sampler_accept(self.sampler, chosen)
        return chosen

    def _allows(self, token: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        array = self._one_array
        array.size, array.selected, array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self.sampler, ctypes.byref(array))
        return not math.isinf(self._one[0].logit)

    def _resample(self, chain, logits_at: int) -> int:
        logits = self._lib.llama_get_logits_ith(self._ctx, logits_at)
        self._view["id"] = self._ids
        self._view["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        self._view["p"] = 0.0
        array = self._all_array
        array.size, array.selected, array.sorted = self._n_vocab, -1, False
        self._lib.llama_sampler_apply(self.sampler, ctypes.byref(array))
        self._lib.llama_sampler_apply(chain, ctypes.byref(array))
        return int(self._all[array.selected].id)

    def free(self) -> None:
        self._lib.llama_sampler_free(self.sampler)
