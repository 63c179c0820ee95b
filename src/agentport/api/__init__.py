"""Wire dialects: pydantic wire models and pure translators to and from the core types.

Nothing here does I/O or imports the runtime, the engines or the server.
"""
