"""Model-family knowledge: prompt rendering from the model's own chat template (sandboxed and
bounded), tool prompts, one module per model family in `families/` (markers, output parser,
call format), the streaming parser machinery they share, one JSON-schema module, and
schema -> grammar (bounded)."""
