"""Launchers that wire a coding agent to the agentport server (`agentport launch ...`).

`claude.py` starts Claude Code against the server, starting the server first if none answers.
"""
