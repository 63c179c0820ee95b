"""Memory planning: GGUF metadata without loading weights, and how large a context fits."""
