"""Small HTTP helpers shared by the sim engine's route modules."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from rastos.engine.protocol import APIError, validation_message

__all__ = ["json_response", "parse_body"]

_JSON = "application/json"


def json_response(
    body: bytes | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type=_JSON, headers=headers)


def parse_body(model: type[BaseModel], raw: bytes) -> Any:
    if not raw.strip():
        raise APIError(400, "Request body is empty; expected a JSON object.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        msg, param = validation_message(exc)
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise APIError(400, f"Request body is not valid JSON: {msg}") from None
        raise APIError(400, msg, param) from None
