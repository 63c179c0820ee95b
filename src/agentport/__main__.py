"""`python -m agentport`: the command line."""

from agentport.cli.main import app

app()
