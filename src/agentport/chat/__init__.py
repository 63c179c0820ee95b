"""Model-family knowledge: prompt rendering from the model's own chat template, tool prompts,
and output parsers that turn generated text into text, thinking and tool-call events."""
