"""Wire dialects: pydantic wire models, pure translators to and from the core types, and one
chat codec per chat endpoint (`common.ChatCodec`), every wire shape included (create, pull and
push too, in `ollama_models`).

Nothing here does I/O; it imports only `core` and `errors`, never the runtime, the engines, the
store or the server.
"""
