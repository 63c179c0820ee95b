"""agentport: a local model runtime for coding agents."""

__version__ = "0.1.0"
