"""Answers in the shape of HighLevel's NestJS service: JSON bodies and error answers.

The API's handlers answer an :class:`Answer` (status, body, content type, headers): the
sandbox's front writes it as it is, and :meth:`Answer.response` makes the same answer an
aiohttp ``web.Response`` for a request aiohttp serves. Making a ``web.Response`` for every
answer cost more than most of what the sandbox does for a request. The admin routes, served by
aiohttp only, answer ``web.Response`` (:func:`json_response`, :meth:`ApiError.response`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["Answer", "ApiError", "json_answer", "json_response"]

_JSON = "application/json"


@dataclass(slots=True)
class Answer:
    """An answer of the API: ``Content-Type`` (unless None) comes first, then ``headers``."""

    status: int
    body: bytes
    content_type: str | None = _JSON
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        """The same answer as aiohttp's ``web.Response`` (same headers, in the same order)."""
        headers: CIMultiDict[str] = CIMultiDict()
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        headers.extend(self.headers)
        return web.Response(status=self.status, body=self.body, headers=headers)


class ApiError(Exception):
    """An error answer in NestJS shape; ``error=None`` leaves the ``error`` field out."""

    def __init__(self, status: int, message: str | list[str], error: str | None = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = HTTPStatus(status).phrase if error == "" else error

    def answer(self) -> Answer:
        body: dict[str, Any] = {"statusCode": self.status, "message": self.message}
        if self.error is not None:
            body["error"] = self.error
        return json_answer(body, status=self.status)

    def response(self) -> web.Response:
        return json_response(
            {"statusCode": self.status, "message": self.message}
            | ({"error": self.error} if self.error is not None else {}),
            status=self.status,
        )


def json_answer(data: Any, *, status: int = 200) -> Answer:
    """``data`` serialized with orjson, as ``application/json``."""
    return Answer(status, orjson.dumps(data))


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """``data`` serialized with orjson, as ``application/json`` (for the admin routes)."""
    return web.Response(status=status, body=orjson.dumps(data), content_type=_JSON)
