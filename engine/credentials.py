"""Where a request's token comes from: a lookup, or a provider that may have to ask a server.

A run sends each request with the token of its location. Most runs know every token up
front (a tokens file, the environment): a :data:`TokenLookup`, a plain function of the
location id. Some get them from a higher credential instead, one that *mints* a token per
location on demand (an agency token, say). That is a :class:`TokenProvider`:

- it is asked lazily, when a location's first request is about to be sent, and may
  ``await`` to mint; it should mint once per location and hand the same token to every
  request of that location;
- it mints by sending requests through ``call``, the client's own :meth:`Client.call
  <engine.client.Client.call>`, so they are paced and retried like any other. The request's
  ``location_id`` names the budget it spends and the token it carries: a provider answers
  for its own resource (``company/…``, say) with the higher credential itself, and for a
  location with that location's token only;
- when the server refuses a token it gave (HTTP 401), the client asks again with
  ``refused=`` that token, and sends the request once more with the fresh one, if any. A
  provider that cannot do better returns None (or the same token), and the 401 stands;
- a location it cannot get a token for (the credential does not reach it) raises
  :class:`~engine.errors.LocationError`: each of that location's records fails with the
  reason, the others go on;
- when the higher credential itself is refused, it raises
  :class:`~engine.errors.CredentialRefused`: the run stops sending, settles its report
  (what was not sent is ``not_run``) and says why, so that a resume with a renewed
  credential finishes it. It must keep raising it, never asking the server again.

Tokens live in memory only: the engine never writes them to a report, a journal or a log,
and requests render their headers redacted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from .model import LocationId, Request

if TYPE_CHECKING:
    from .client import Exchange

__all__ = ["Caller", "TokenLookup", "TokenProvider", "as_provider"]

#: Returns the token for a location, or None when there is none.
TokenLookup: TypeAlias = Callable[[LocationId], str | None]
#: Sends a request the way a run does (paced, retried) and returns its final answer.
Caller: TypeAlias = "Callable[[Request], Awaitable[Exchange]]"


@runtime_checkable
class TokenProvider(Protocol):
    """Gives the token for a location's requests, minting it if need be (module docs)."""

    async def token(
        self, location_id: LocationId, call: Caller, *, refused: str | None = None
    ) -> str | None:
        """The token for ``location_id``'s requests, or None when there is none.

        ``refused``: a token this provider gave, which the server has just refused (401):
        answer a fresh one, or None when there is nothing better."""
        ...


class _Lookup:
    """A :class:`TokenProvider` over a lookup: tokens known up front, never renewed."""

    __slots__ = ("_lookup",)

    def __init__(self, lookup: TokenLookup) -> None:
        self._lookup = lookup

    async def token(
        self, location_id: LocationId, call: Caller, *, refused: str | None = None
    ) -> str | None:
        return None if refused is not None else self._lookup(location_id)


def as_provider(tokens: TokenLookup | TokenProvider) -> TokenProvider:
    """``tokens`` as a provider (a lookup is wrapped; a provider is returned as it is)."""
    if isinstance(tokens, TokenProvider):
        return tokens
    return _Lookup(tokens)
