"""The command line of agentport (typer + rich).

`main.py` holds the typer app and its commands; every command except `serve` is a client of the
server's own HTTP API (`client.py`). Formatting helpers (`format.py`), the streamed chat of
`agentport run` (`chat.py`) and console output with its one-line errors (`console.py`) live beside
it.
"""
