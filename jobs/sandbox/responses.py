"""Answers in the shape of HighLevel's NestJS service: JSON bodies and error answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

__all__ = ["ApiError", "json_response"]


class ApiError(Exception):
    """An error answer in NestJS shape; ``error=None`` leaves the ``error`` field out."""

    def __init__(
        self,
        status: int,
        message: str | list[str],
        error: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = HTTPStatus(status).phrase if error == "" else error
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"statusCode": self.status, "message": self.message}
        if self.error is not None:
            body["error"] = self.error
        return json_response(body, status=self.status, headers=self.headers)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` serialized with orjson, as ``application/json``."""
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )
