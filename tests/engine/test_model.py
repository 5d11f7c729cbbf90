"""The values that cross layers."""

from __future__ import annotations

import dataclasses

from engine import Request


def test_with_headers_copies_every_field_and_merges_the_headers() -> None:
    """Request.with_headers keeps every other field as it was (it is hand-written, for speed)."""
    values = {
        "method": "POST",
        "url": "https://api.example/x",
        "location_id": "loc1",
        "params": {"a": "1"},
        "headers": {"Version": "v"},
        "json": {"k": "v"},
        "content": b"raw",
    }
    assert set(values) == {f.name for f in dataclasses.fields(Request)}  # a new field? add it
    copy = Request(**values).with_headers({"Authorization": "Bearer t"})  # type: ignore[arg-type]
    for name, value in values.items():
        if name != "headers":
            assert getattr(copy, name) == value
    assert copy.headers == {"Version": "v", "Authorization": "Bearer t"}
