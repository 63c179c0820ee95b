"""The one error hierarchy of agentport.

Each error carries a `kind`; the HTTP status and body are chosen at the edge, per API dialect
(see `server/errors.py`). Backend exceptions are mapped into this tree once, at the adapter that
calls the backend, with `raise X(...) from exc`.

    AgentportError                      kind
    ├── InvalidRequestError             invalid_request      400
    │   ├── PromptTooLongError          invalid_request      400 "prompt is too long: ..."
    │   ├── UnsupportedContentError     invalid_request      400 (an image, text-only model)
    │   ├── SchemaTooComplexError       invalid_request      400 (a schema expands past a bound)
    │   └── TemplateLimitError          invalid_request      400 (the model's chat template ran
    │                                                             past a time / size / depth bound)
    ├── AuthenticationError             authentication       401
    ├── PermissionDeniedError           permission           403 (foreign Host or Origin)
    ├── NotFoundError                   not_found            404
    │   └── ModelNotFoundError          not_found            404 (names the models that exist)
    ├── RequestTooLargeError            request_too_large    413
    ├── RateLimitedError                rate_limit           429
    ├── OverloadedError                 overloaded           529 / 503 (queue full; has retry_after)
    ├── CancelledError                  cancelled            499 (the client went away)
    ├── UpstreamError                   upstream             502 (a registry could not be reached)
    ├── InternalError                   internal             500
    │   ├── EngineError                 internal             500 (the engine failed)
    │   └── ModelLoadError              internal             500 (the weights could not be loaded)
    └── ClientSideError                 (raised by the CLI and launchers, never served)
        ├── ServerNotRunningError       unavailable          nothing answers at the address
        ├── ApiError                    api                  the server answered with an error
        └── LaunchError                 launch               an agent could not be started
"""

from __future__ import annotations


class AgentportError(Exception):
    """Base of every error agentport raises on purpose."""

    kind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(AgentportError):
    kind = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class PromptTooLongError(InvalidRequestError):
    def __init__(self, n_tokens: int, maximum: int) -> None:
        # Claude Code recognises this exact wording and compacts the conversation.
        super().__init__(f"prompt is too long: {n_tokens} tokens > {maximum} maximum")
        self.n_tokens = n_tokens
        self.maximum = maximum


class UnsupportedContentError(InvalidRequestError):
    pass


class SchemaTooComplexError(InvalidRequestError):
    """A tool's input_schema or a response schema expands past one of the bounds of
    `chat/json_schema.py` or `chat/grammar.py`; the message names the bound."""

    def __init__(self, what: str, bound: str) -> None:
        super().__init__(f"{what} is too complex: {bound}")
        self.bound = bound


class TemplateLimitError(InvalidRequestError):
    """The model's chat template (the model author's code) ran past a bound while rendering.

    A 400, not a 500: the server is fine and retrying the same conversation cannot help, so a
    client that retries 5xx answers must not; the message names the model and the bound."""

    def __init__(self, model: str, bound: str) -> None:
        super().__init__(f"the chat template of model '{model}' failed: it {bound}")
        self.model = model
        self.bound = bound


class AuthenticationError(AgentportError):
    kind = "authentication"


class PermissionDeniedError(AgentportError):
    kind = "permission"


class NotFoundError(AgentportError):
    kind = "not_found"


class ModelNotFoundError(NotFoundError):
    def __init__(self, name: str, available: list[str]) -> None:
        listed = ", ".join(available) if available else "none"
        super().__init__(f"model '{name}' not found; available models: {listed}")
        self.name = name
        self.available = available


class RequestTooLargeError(AgentportError):
    kind = "request_too_large"


class RateLimitedError(AgentportError):
    kind = "rate_limit"


class OverloadedError(AgentportError):
    kind = "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CancelledError(AgentportError):
    kind = "cancelled"


class UpstreamError(AgentportError):
    kind = "upstream"


class InternalError(AgentportError):
    kind = "internal"


class EngineError(InternalError):
    pass


class ModelLoadError(InternalError):
    pass


class ClientSideError(AgentportError):
    """Errors of agentport's own clients (the CLI, the launchers)."""


class ServerNotRunningError(ClientSideError):
    kind = "unavailable"

    def __init__(self, base_url: str) -> None:
        super().__init__(
            f"agentport server is not running at {base_url}; start it with `agentport serve`"
        )
        self.base_url = base_url


class ApiError(ClientSideError):
    kind = "api"


class LaunchError(ClientSideError):
    kind = "launch"
