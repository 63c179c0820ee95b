"""Grammar-constrained sampling for the llama.cpp engine, at the cost of unconstrained sampling.

Applying a grammar to the whole vocabulary costs a partial parse per token candidate: on a
49k-token vocabulary that is most of a second per token on a small CPU. So, as llama.cpp's own
server does, the token is sampled without the grammar first and the grammar checks that one
token; only when it refuses is the grammar applied to every candidate and the token sampled again.

A lazy grammar (tool_choice auto) is llama.cpp's lazy grammar sampler: dormant, it lets every
token through until a trigger token or pattern starts it. While dormant llama.cpp searches its
patterns in all the text generated so far, a cost that grows with the answer; so every `WINDOW`
tokens a dormant gate starts afresh from its last `REPLAY` tokens, dropping the patterns anchored
at the answer's start (they can no longer match). With nothing left to wait for, the gate lets
every token through at no cost.

A call must also end within `max_tokens`: a small model can ramble inside a string until the
budget runs out, leaving a call that no parser reads. So over the budget's last half (at most
`RESERVE` tokens) an unfinished grammar steers to the end: of the tokens the grammar allows it
takes the longest of those that head best for a close (a quote inside a JSON string, the end tag
of a raw text value, closing brackets rather than a comma between values), else the likeliest;
and a forced grammar that is complete ends the answer there rather than begin another call.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Callable

import numpy as np

from agentport.core import SamplingParams

log = logging.getLogger("agentport.engine")

WINDOW = 256  # tokens between fresh starts of a dormant lazy grammar
REPLAY = 16  # tokens replayed into the fresh start: a trigger split across the cut still counts
RESERVE = 128  # at most this many last tokens of the budget steer an unfinished call to its end
# How much a character of a token between values heads for the end: closing brackets most,
# a comma (one more value) or an opening bracket least.
CLOSING = {ord("}"): 3, ord("]"): 3, ord("/"): 2, ord('"'): 1, ord("<"): 1, ord(","): -2}
CLOSING |= {ord("{"): -3, ord("["): -3}
TEXT_END = b"\n</parameter>"  # ends a raw text value (Qwen3-Coder's, the one such format)


class GrammarGate:
    def __init__(
        self,
        lib,
        ctx,
        vocab,
        grammar: str,
        tokens: list[int] | None = None,
        patterns: list[str] | None = None,
        budget: int | None = None,
    ) -> None:
        """A gate for `grammar`; lazy when it has trigger `tokens` or `patterns`; steering to an
        end within `budget` tokens. `sampler` is None where llama.cpp cannot compile it."""
        self._lib, self._ctx, self._vocab = lib, ctx, vocab
        self._grammar = grammar.encode()
        self._tokens, self._patterns = list(tokens or []), list(patterns or [])
        self._lazy = bool(self._tokens or self._patterns)
        self.sampler = self._new_sampler()
        self._n_vocab = lib.llama_vocab_n_tokens(vocab)
        self._one = (lib.llama_token_data * 1)()
        self._one_array = lib.llama_token_data_array(self._one, 1, -1, False)
        self._all = (lib.llama_token_data * self._n_vocab)()
        self._all_array = lib.llama_token_data_array(self._all, self._n_vocab, -1, False)
        self._view = np.ctypeslib.as_array(self._all)
        self._ids = np.arange(self._n_vocab, dtype=np.int32)
        self._recent = [0] * REPLAY
        self._seen = 0
        self._started = not self._lazy  # the grammar has applied (a lazy one: seen constraining)
        self._steer_from = None if budget is None else budget - max(min(RESERVE, budget // 2), 1)
        self._pieces: list[bytes] = []  # every token's text, read when steering starts
        self._probes = (-1, -1)  # a letter and a newline
        self._ends: dict[bytes, np.ndarray] = {}  # tokens that write on towards the end tag
        self._tail = b""  # the text steered so far (its last bytes)
        eos = lib.llama_vocab_eos(vocab)
        self._probe = eos if eos >= 0 else lib.llama_vocab_eot(vocab)  # refused while started

    @classmethod
    def create(
        cls, lib, ctx, vocab, params: SamplingParams, single_token: Callable[[str], int | None]
    ) -> GrammarGate | None:
        """The gate for `params`, or None: no grammar, one llama.cpp cannot compile (the answer
        is then unconstrained and the parser decides), or a lazy one nothing can start."""
        if not params.grammar:
            return None
        tokens, patterns = [], []
        for text, pattern in params.grammar_triggers:
            token = single_token(text) if text else None
            if token is not None:
                tokens.append(token)
            elif pattern:
                patterns.append(pattern)
        if params.grammar_triggers and not tokens and not patterns:
            return None
        gate = cls(lib, ctx, vocab, params.grammar, tokens, patterns, params.max_tokens)
        if not gate.sampler:
            log.warning("llama.cpp cannot compile the grammar; generating without it")
            return None
        return gate

    def _new_sampler(self):
        lib = self._lib
        if not self._lazy:
            return lib.llama_sampler_init_grammar(self._vocab, self._grammar, b"root")
        patterns = (ctypes.c_char_p * len(self._patterns))(*(p.encode() for p in self._patterns))
        tokens = (lib.llama_token * len(self._tokens))(*self._tokens)
        return lib.llama_sampler_init_grammar_lazy_patterns(
            self._vocab,
            self._grammar,
            b"root",
            patterns,
            len(self._patterns),
            tokens,
            len(self._tokens),
        )

    def choose(self, chain, token: int, logits_at: int) -> int:
        """`token` if the grammar allows it, else a token sampled under the grammar from the
        logits of batch position `logits_at` (near the end of the budget: one heading for the
        end of the call)."""
        if self.sampler is None:
            return token
        steering = self._steer_from is not None and self._seen >= self._steer_from
        constraining = steering and self.constraining
        self._started = self._started or constraining
        if constraining:
            chosen = self._steer(logits_at)
        elif steering and self._started and self._probe >= 0:
            chosen = self._probe  # complete: end here rather than begin another call
        else:
            chosen = token if self.allows(token) else self._resample(chain, logits_at)
        self._lib.llama_sampler_accept(self.sampler, chosen)
        self._recent[self._seen % REPLAY] = chosen
        self._note()
        return chosen

    def allows(self, token: int) -> bool:
        """Whether the grammar accepts `token` next (a dormant lazy grammar: any token)."""
        if self.sampler is None:
            return True
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        array = self._one_array
        array.size, array.selected, array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self.sampler, ctypes.byref(array))
        return not math.isinf(self._one[0].logit)

    def _resample(self, chain, logits_at: int) -> int:
        self._apply_all(logits_at)
        array = self._all_array
        self._lib.llama_sampler_apply(chain, ctypes.byref(array))
        return int(self._all[array.selected].id)

    def _apply_all(self, logits_at: int) -> None:
        """The logits of `logits_at` in `self._all`, those the grammar refuses at -inf."""
        logits = self._lib.llama_get_logits_ith(self._ctx, logits_at)
        self._view["id"] = self._ids
        self._view["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        self._view["p"] = 0.0
        array = self._all_array
        array.size, array.selected, array.sorted = self._n_vocab, -1, False
        self._lib.llama_sampler_apply(self.sampler, ctypes.byref(array))

    # --- the end of the budget -----------------------------------------------------------------

    def _steer(self, logits_at: int) -> int:
        """The likeliest allowed token among those that head best for the call's end."""
        if not self._pieces:
            self._read_pieces()
        letter, newline = self._probes
        in_text = letter >= 0 and self.allows(letter)  # inside a string or a raw text value
        raw = in_text and newline >= 0 and self.allows(newline)
        if raw:  # a raw text value ends with its end tag
            scores = self._towards(_rest_of(TEXT_END, self._tail))
        elif in_text:  # a JSON string ends with a quote
            scores = np.where(self._first == ord('"'), 100 + self._closing, 0)
        else:
            scores = self._closing
        self._apply_all(logits_at)
        logits = self._view["logit"].copy()
        allowed = np.isfinite(logits)
        top = scores[allowed].max()
        best = allowed & (scores == top)
        if top > 0:  # of the tokens that head for the end, the one that gets furthest
            best &= self._lengths == self._lengths[best].max()
        logits[~best] = -np.inf
        chosen = int(np.argmax(logits))
        self._tail = (self._tail + self._pieces[chosen])[-len(TEXT_END) :] if raw else b""
        return chosen

    def _towards(self, rest: bytes) -> np.ndarray:
        if rest not in self._ends:
            self._ends[rest] = np.array(
                [bool(p) and (p.startswith(rest) or rest.startswith(p)) for p in self._pieces]
            )
        return self._ends[rest]

    def _read_pieces(self) -> None:
        lib, buffer = self._lib, ctypes.create_string_buffer(256)
        for token in range(self._n_vocab):
            size = lib.llama_token_to_piece(self._vocab, token, buffer, 256, 0, True)
            self._pieces.append(buffer.raw[: max(size, 0)])
        self._first = np.array([p[0] if p else 0 for p in self._pieces], dtype=np.uint8)
        self._lengths = np.array([len(p) for p in self._pieces], dtype=np.int32)
        self._closing = np.array([_closing(piece) for piece in self._pieces], dtype=np.int32)
        self._probes = (self._token_of(b"e"), self._token_of(b"\n"))

    def _token_of(self, text: bytes) -> int:
        tokens = (self._lib.llama_token * 4)()
        n = self._lib.llama_tokenize(self._vocab, text, len(text), tokens, 4, False, False)
        return tokens[0] if n == 1 else -1

    # --- lazy grammars -------------------------------------------------------------------------

    def _note(self) -> None:
        self._seen += 1
        if self._lazy and self._seen % WINDOW == 0 and self._dormant():
            self._restart()

    def _dormant(self) -> bool:
        """Not started (or started and complete): the end of generation is not refused."""
        return self._probe >= 0 and self.allows(self._probe)

    def _restart(self) -> None:
        self._lib.llama_sampler_free(self.sampler)
        self.sampler = None
        self._patterns = [p for p in self._patterns if not p.startswith("^")]
        if self._tokens or self._patterns:
            self.sampler = self._new_sampler() or None
        if self.sampler is None:
            return
        for seen in range(max(self._seen - REPLAY, 0), self._seen):
            self._lib.llama_sampler_accept(self.sampler, self._recent[seen % REPLAY])

    @property
    def constraining(self) -> bool:
        """Whether the grammar is started and unfinished: it refuses the end of generation."""
        return self.sampler is not None and not self._dormant()

    def free(self) -> None:
        if self.sampler is not None:
            self._lib.llama_sampler_free(self.sampler)
            self.sampler = None


def _closing(piece: bytes) -> int:
    """How much `piece` heads for the end of a call: its closing characters, each counting
    half as much as the one before it (`"\\n<` begins a new call where `<` may end the list)."""
    return sum(CLOSING.get(byte, 0) * 2 ** (8 - i) for i, byte in enumerate(piece[:8]))


def _rest_of(target: bytes, written: bytes) -> bytes:
    """What remains of `target` after the longest start of it that `written` ends with."""
    for k in range(len(target) - 1, 0, -1):
        if written.endswith(target[:k]):
            return target[k:]
    return target


def grammar_compiles(grammar: str) -> bool:
    """Whether llama.cpp accepts `grammar`; ImportError where llama-cpp-python is missing."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
