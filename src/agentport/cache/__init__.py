"""The prefix cache: which token prefixes the engine's KV cache holds (in its sequences, live or
parked, and on disk), so a new prompt starts from the longest one."""
