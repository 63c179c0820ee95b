"""create_app(settings, runtime) and run_server(settings): the FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentport import __version__
from agentport.config import Settings, check_exposure
from agentport.errors import AgentportError, InvalidRequestError, NotFoundError
from agentport.runtime import Runtime
from agentport.runtime.engine_choice import engine_factory
from agentport.server.errors import (
    dialect_of,
    error_response,
    handle_agentport_error,
    handle_unexpected,
)
from agentport.server.routes import add_routes
from agentport.server.security import EdgeGuard

log = logging.getLogger("agentport.server")


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings, engine_factory=engine_factory(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        preload = asyncio.create_task(_preload(runtime, settings.default_model))
        yield
        preload.cancel()
        await runtime.stop()

    app = FastAPI(
        title="agentport",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.add_middleware(EdgeGuard, settings=settings)
    app.add_exception_handler(AgentportError, handle_agentport_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, handle_unexpected)
    add_routes(app)
    return app


async def _preload(runtime: Runtime, name: str) -> None:
    try:
        await runtime.model(name)
    except AgentportError as error:
        log.warning("default model not loaded: %s", error.message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    path = request.url.path
    if exc.status_code == 404:
        error: AgentportError = NotFoundError(f"no route for {request.method} {path}")
    elif exc.status_code == 405:
        error = InvalidRequestError(f"method {request.method} is not allowed on {path}")
    else:
        error = AgentportError(str(exc.detail))
    response = error_response(error, dialect_of(path))
    if exc.status_code == 405:
        response.status_code = 405
    return response


def run_server(settings: Settings) -> None:
    import uvicorn

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (warning := check_exposure(settings)) is not None:
        log.warning(warning)
    host, port = settings.bind
    log.info("agentport %s listening on http://%s:%d", __version__, host, port)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
