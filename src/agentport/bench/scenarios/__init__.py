"""The benchmark's scenarios, one module each: `load` (serve, compare), `decode`,
`concurrency`, `engine`, `agent_loop` (with the Claude Code-shaped `conversation` it sends),
`claude_shape`, and `tool_calls` (with `bfcl`, the BFCL cases and their scoring). Each builds on
the package's drivers, targets, metrics and report.
"""
