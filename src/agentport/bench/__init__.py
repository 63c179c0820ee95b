"""The benchmark harness behind `agentport bench`.

`metrics` defines what is measured (TTFT, TPOT, ITL, E2E, prompt and decode tokens/s; median,
p90, p99), `drivers` records event timelines from HTTP servers in three dialects and from
engines called directly, `targets` starts and stops the servers under test, `engines` loads
engines by name, `scenarios` runs engine / serve / compare, `bandwidth` gives the decode bound,
`report` writes JSON, markdown and PNG, and `gate` decides regressions.
"""
