"""Where tokens come from: a tokens file, else ``<PREFIX><LOCATION_ID>`` variables, else one
shared variable. Tokens are only ever handed to the client, never logged or reported."""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Mapping

import orjson
import structlog

from .credentials import TokenLookup
from .errors import ConfigError
from .source import decode_text

__all__ = ["load_tokens"]

log = structlog.get_logger("engine")


_SEPARATORS = {";": "semicolon", "\t": "tab"}


def _read_file(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"tokens file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("tokens file is readable by other users; chmod 600 it", path=path)
    try:
        text = decode_text(data)
    except ValueError as exc:
        raise ConfigError(f"tokens file {path}: {exc}") from None
    tokens = _parse(path, text)
    if not tokens:
        # Given on purpose, an empty file is a mistake (a failed export, the wrong file):
        # it would fail every location with "no token" after reading none.
        raise ConfigError(
            f"tokens file {path} holds no tokens: expected CSV rows location_id,token or "
            'JSON {"locationId": "token", ...}'
        )
    return tokens


def _parse(path: str, text: str) -> dict[str, str]:
    if text.lstrip().startswith(("{", "[")):  # "[": JSON too, but the wrong shape
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"tokens file {path}:{exc.lineno}: broken JSON") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ConfigError(f'tokens file {path}: expected {{"locationId": "token", ...}}')
        return {k.strip(): v.strip() for k, v in data.items()}
    tokens: dict[str, str] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if number == 1 and [c.strip().lower() for c in row[:2]] == ["location_id", "token"]:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            # Never echo the row: it may hold a token.
            hint = "expected two columns location_id,token"
            for separator, name in _SEPARATORS.items():
                if len(row) == 1 and separator in row[0]:
                    hint = f"this looks {name}-separated; {hint} separated by a comma"
            raise ConfigError(f"tokens file {path}:{number}: {hint}")
        tokens[row[0].strip()] = row[1].strip()
    return tokens


def load_tokens(
    path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prefix: str = "GHL_TOKEN",
) -> TokenLookup:
    """A lookup: the tokens file first, then ``{prefix}_{LOCATION_ID}``, then ``{prefix}``."""
    env = os.environ if environ is None else environ
    from_file = _read_file(path) if path else {}

    def lookup(location_id: str) -> str | None:
        return (
            from_file.get(location_id)
            or env.get(f"{prefix}_{location_id}")
            or env.get(prefix)
            or None
        )

    return lookup
