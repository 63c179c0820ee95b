"""`pull`: one entry point for pulling a model by name, whatever its source.

`hf.co/{owner}/{repo}[:quant]` names go to the Hugging Face puller (`store/hf.py`), every other
name to a registry that speaks Ollama's protocol (`store/registry.py`). Both yield the same
progress dicts (Ollama's format) and raise `AgentportError`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agentport.config import Settings
from agentport.store.models import ModelStore
from agentport.store.names import parse_name
from agentport.store.registry import pull_registry


async def pull(
    store: ModelStore, settings: Settings, name_text: str, *, insecure: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """Pull the model `name_text` into `store`, yielding progress events. `insecure` lets a
    registry named by its host be reached over plain http."""
    name = parse_name(name_text)
    if name.is_hf:
        from agentport.store.hf import pull_hf

        events = pull_hf(store, settings, name)
    else:
        events = pull_registry(store, settings, name, insecure=insecure)
    try:
        async for event in events:
            yield event
    finally:  # a consumer that stops early stops the pull too (partial files stay, to resume)
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
