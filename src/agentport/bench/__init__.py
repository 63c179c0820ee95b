"""The benchmark harness behind `agentport bench`.

`metrics` defines what is measured (bench/README.md states each definition once), `drivers`
records event timelines from HTTP servers and from engines called directly, `targets` starts and
stops the servers under test (with a clean environment), `llama_server` builds or finds
llama.cpp's own server in the user's cache, `engines` loads engines by name, `prompts` writes
the prompt text, `cpu` accounts for other processes' CPU, `bandwidth` gives the decode bound,
`report` writes JSON, markdown and PNG, `gate` decides regressions, and `scenarios` holds one
module per scenario.
"""
