"""Request validation in NestJS class-validator style: JSON bodies, body fields, query values."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .responses import ApiError

__all__ = ["admin_body", "body_fields", "query_error", "read_body"]


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON body; like Express's body parser, ignored unless sent as application/json."""
    raw = await request.read()
    if not raw or request.content_type != "application/json":
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"Unexpected token in JSON at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise ApiError(400, ["request body must be a JSON object"])
    return data


def body_fields(
    body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """Body validation (400): required non-empty strings, optional strings, nothing else."""
    errors: list[str] = []
    values: dict[str, str] = {}
    for name in required + optional:
        value = body.get(name)
        if name not in body and name in optional:
            continue
        if not isinstance(value, str):
            errors.append(f"{name} must be a string")
        elif value.strip():
            values[name] = value
        elif name in required:
            errors.append(f"{name} should not be empty")
    errors += [f"property {p} should not exist" for p in body if p not in required + optional]
    if errors:
        raise ApiError(400, errors)
    return values


def query_error(name: str, given: list[str]) -> str | None:
    """Validation message for one query parameter, NestJS class-validator style."""
    if name == "locationId":
        if len(given) != 1:
            return "locationId must be a string"
        return None if given[0].strip() else "locationId should not be empty"
    if name == "associationIds":  # an array: associationIds=a&associationIds=b
        empty = any(not value.strip() for value in given)
        return "each value in associationIds should not be empty" if empty else None
    number = given[0].strip() if len(given) == 1 else ""
    if not number.lstrip("-").isdigit():
        return f"{name} must be a number conforming to the specified constraints"
    low, high = (0, None) if name == "skip" else (1, 500)
    if int(number) < low:
        return f"{name} must not be less than {low}"
    if high is not None and int(number) > high:
        return f"{name} must not be greater than {high}"
    return None


async def admin_body(request: web.Request) -> dict[str, Any]:
    """The JSON object body of an admin request; plain-text 400 otherwise."""
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return data
