"""The application state every handler reads: the runtime and the settings."""

from __future__ import annotations

from starlette.requests import Request

from agentport.config import Settings
from agentport.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def settings_of(request: Request) -> Settings:
    return request.app.state.settings
