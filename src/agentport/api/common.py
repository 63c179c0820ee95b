"""Helpers shared by the dialect translators."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

from agentport.errors import InvalidRequestError


class Lenient(BaseModel):
    """A wire model that keeps fields it does not know: clients send newer fields all the time."""

    model_config = ConfigDict(extra="allow")


def validate(model: type[BaseModel], body: object) -> BaseModel:
    """Validate a decoded JSON body, turning pydantic's errors into one clear 400."""
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)
