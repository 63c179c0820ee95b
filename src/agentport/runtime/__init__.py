"""The scheduler: resolves model names, loads engines, runs generations off the event loop."""

from agentport.runtime.scheduler import LoadedModel, Prepared, Runtime

__all__ = ["LoadedModel", "Prepared", "Runtime"]
