"""The benchmark's prompt text: deterministic prose from one vocabulary, and the tagged chat
prompts of the load scenarios (a tag naming the round and request at the very front, so that no
prefix cache can help), plus the log line every scenario prints to stderr.
"""

from __future__ import annotations

import random
import sys

from agentport.bench.drivers import SEED, Prompt

VOCABULARY = (
    "harbour lighthouse keeper river timber sawmill ferry captain lantern winter summer fog "
    "boat rope tar brass bakery tavern story painter light water forest whistle noon night "
    "ship flag deck mirror signal pattern storm wave tide shore cliff gull net anchor sail "
    "the file tool agent code test function user change error result repository branch commit "
    "review build module import return value string list object type check path run command "
    "output line edit search read write create delete update project config server request "
    "response stream token model context prompt cache system message block"
)
WORDS = VOCABULARY.split()


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def prose(rng: random.Random, n_words: int) -> str:
    """About ``n_words`` words of sentences (8 to 20 words each) drawn with ``rng``."""
    sentences, words = [], 0
    while words < n_words:
        length = min(rng.randint(8, 20), max(n_words - words, 1))
        sentence = " ".join(rng.choice(WORDS) for _ in range(length))
        sentences.append(sentence.capitalize() + ".")
        words += length
    return " ".join(sentences)


def tagged(tag: str, n_words: int, seed: int = SEED) -> str:
    """``n_words`` of prose behind ``[tag]``: same tag and seed, same text."""
    return f"[{tag}] " + prose(random.Random(seed), n_words)


def chat_prompt(tag: str, words: int, tokens: int, tools: tuple[dict, ...] = ()) -> Prompt:
    """A storytelling request whose system and user texts both start with ``tag``, offering
    ``tools`` (so a server's lazy tool-call grammar watches the whole answer)."""
    system = f"[{tag}] You are a storyteller. Continue the story you are given."
    return Prompt(system, tagged(tag, words), tokens, tools=tools)
