"""The runtime: resolves model names, loads engines under the memory plan (loader), prepares
prompts off the event loop (prompts), runs generations and turns engine items into core events
(generation). Scheduling itself (admission, continuous batching) is the engine's."""

from agentport.runtime.loader import LoadedModel
from agentport.runtime.prompts import Prepared
from agentport.runtime.runtime import Runtime

__all__ = ["LoadedModel", "Prepared", "Runtime"]
