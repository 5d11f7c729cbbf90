"""Sending one logical request: token, per-location pacing, retries, statistics.

Job kinds call ``Client.call``; it is the only way they reach the network. For each attempt
it waits for a slot of the request's location (so a location that gets 429s slows down
alone), adds that location's token, sends through the transport, feeds the response's rate
headers back to the location's limiter, and lets stamina decide on another attempt.

It also notices a host that cannot be reached at all: when a request has used up its
attempts without ever connecting (DNS, refused, TLS) and no other request connected
meanwhile, the host is unreachable; the client calls ``on_unreachable`` once, stops, and
every call still going ends in ``RunStopped`` rather than in one more failure.

With the ``engine`` logger at debug level it logs every request decision (sent, answered,
failed); the lines carry the record's ``location`` and ``source`` that the runner binds.
Warnings are for what a person can act on: a request given up on, a location throttled
below its expected rate.

Tokens come from a lookup or a provider (:mod:`engine.credentials`). A provider may mint a
location's token by sending requests through ``call`` itself; when a token it gave is
refused (401), the request is sent once more with a fresh one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import structlog

from .concurrency import Latency
from .credentials import TokenLookup, TokenProvider, as_provider
from .errors import (
    ConnectFailed,
    HTTPStatusError,
    MissingToken,
    RequestError,
    RunStopped,
    TransportError,
)
from .gates import LocationGates
from .model import LocationId, Request, Response
from .rates import RateHint
from .retry import RETRYABLE_STATUSES, RetryPolicy, describe_failure, is_retryable, log_retries
from .timeline import AttemptRecorder

if TYPE_CHECKING:  # annotations only: aiohttp loads with the runner, not with every job kind
    from .transport import Transport

__all__ = ["Client", "Exchange", "RunStats", "TokenLookup"]

#: the status of an answer that refuses the request's token
_UNAUTHORIZED = 401


@dataclass(slots=True)
class RunStats:
    """Counters for the summary. Mutated only from the event loop's thread."""

    #: attempts that reached the server: answered, or lost after the connection was made
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    #: attempts lost after connecting: reset, dropped, timed out waiting for the answer
    transport_errors: int = 0
    server_errors: int = 0
    #: attempts that never reached the server: no connection could be made
    connect_failures: int = 0
    #: requests that reached the server, by HTTP method
    by_method: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False, slots=True)
class _Call:
    """One ``Client.call`` in progress: cancellable while it waits, not while it sends."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    sending: bool = False


@dataclass(slots=True)
class _Tries:
    attempts: int = 0
    ambiguous: bool = False
    #: ``Client._connected`` when the call began: unchanged at its end means that no
    #: request of the run connected while this one was trying
    connected: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """The final answer to a request and how it was reached."""

    response: Response
    attempts: int
    #: an earlier attempt may have reached the server and had an effect (reset, timeout,
    #: 5xx); an attempt that could not connect never did
    ambiguous: bool = False


class Client:
    """Sends requests for many locations, each with its own token and budget."""

    def __init__(
        self,
        *,
        transport: Transport,
        tokens: TokenLookup | TokenProvider,
        gates: LocationGates,
        read_rate: Callable[[Response], RateHint],
        policy: RetryPolicy | None = None,
        on_unreachable: Callable[[ConnectFailed], None] | None = None,
        recorder: AttemptRecorder | None = None,
    ) -> None:
        self._transport = transport
        self._tokens = as_provider(tokens)
        self._gates = gates
        self._read_rate = read_rate
        self._policy = policy or RetryPolicy()
        self._hook = functools.partial(is_retryable, max_retry_after=self._policy.max_retry_after)
        self._stopping = False
        self._calls: set[_Call] = set()
        self._on_unreachable = on_unreachable
        self._recorder = recorder  # told of every attempt: the run's timeline
        self._connected = 0  # attempts that made a connection, over the whole run
        #: the failure that showed the host cannot be reached, once it has
        self.unreachable: ConnectFailed | None = None
        self.stats = RunStats()
        self._log = structlog.get_logger("engine").bind()
        # Checked once: per-request debug lines cost nothing unless they are wanted.
        self._verbose = self._log.is_enabled_for(logging.DEBUG)
        #: how long answers take: a run sizes its work by it (engine.concurrency)
        self.latency = Latency()

    @property
    def gates(self) -> LocationGates:
        """The per-location limiters."""
        return self._gates

    def stop(self) -> None:
        """Send nothing more: calls waiting for a slot or a backoff raise ``RunStopped`` at
        once; a request on the wire is left to finish (or time out)."""
        self._stopping = True
        for call in self._calls:
            if not call.sending:
                call.scope.cancel()

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopping

    async def call(self, request: Request) -> Exchange:
        """Send ``request``, retrying transient failures; return the final response.

        A 2xx/3xx/4xx answer other than 429 is returned as is, for the job kind to judge.
        Raises ``RequestError`` (with ``attempts`` and ``ambiguous`` set) when every attempt
        failed, ``RunStopped`` when the run is stopping, and the limiter's
        ``DailyLimitExhausted`` when the location's daily budget is spent. The token
        provider may raise ``LocationError`` (no token can be had for this location) and
        ``CredentialRefused``.
        """
        location = request.location_id
        token = await self._tokens.token(location, self.call)
        if not token:
            raise MissingToken(f"no token for location {location}", request=request)
        exchange = await self._call(request, token)
        if exchange.response.status != _UNAUTHORIZED:
            return exchange
        # Refused: expired, say. Ask once for a fresh token, and send once more with it.
        fresh = await self._tokens.token(location, self.call, refused=token)
        if not fresh or fresh == token:
            return exchange
        again = await self._call(request, fresh)
        return dataclasses.replace(
            again,
            attempts=exchange.attempts + again.attempts,
            ambiguous=exchange.ambiguous or again.ambiguous,
        )

    async def _call(self, request: Request, token: str) -> Exchange:
        # The token goes only on this location's own request, and only in this copy.
        signed = request.with_headers({"Authorization": f"Bearer {token}"})
        tries = _Tries(connected=self._connected)
        failed: Exception | None = None
        try:
            if self._gates[request.location_id].ready():
                # Fast path, most calls: the slot is taken without waiting and the request
                # goes straight on the wire, so there is nothing stop() would cancel (no
                # cancel scope needed), and stamina's retry context, a tenacity object graph
                # full of reference cycles (about 45 objects a call, which keep the cyclic GC
                # busy), is entered only after a failure.
                try:
                    return await self._attempt(request, signed, None, tries)
                except Exception as exc:
                    if self._hook(exc) is False:  # a float, even 0.0, means "retry after it"
                        raise
                    failed = exc
            call = _Call()
            self._calls.add(call)
            if self._stopping:  # stop() came while the fast path was on the wire
                call.scope.cancel()
            try:
                with call.scope:
                    return await self._retrying(request, signed, call, tries, failed)
            finally:
                self._calls.discard(call)
        except RequestError as exc:
            exc.attempts, exc.ambiguous = tries.attempts, tries.ambiguous
            if isinstance(exc, ConnectFailed) and self._cannot_reach(exc, tries):
                raise RunStopped(f"cannot reach {exc.host}: {exc.cause}") from exc
            if isinstance(exc, TransportError | HTTPStatusError):  # retryable: all tried
                self._log.warning(
                    f"gave up after {exc.attempts} attempts",
                    method=request.method,
                    path=urlsplit(request.url).path,
                    reason=describe_failure(exc),
                )
            raise
        # Only reached when stop() cancelled the wait for a slot or a backoff.
        raise RunStopped("the run is stopping")

    def _cannot_reach(self, exc: ConnectFailed, tries: _Tries) -> bool:
        """Whether this give-up shows that the host cannot be reached; if so (the first
        time), stop and tell ``on_unreachable``.

        A request used up all its attempts without connecting, and no other request
        connected while it tried (through its whole backoff): the DNS, the port or TLS fails
        every time. Whether anything connected earlier in the run does not matter: a host
        that goes away mid-run is as unreachable, and grinding through every remaining
        record, each failing after its own retries, would only turn them from ``not_run``
        into ``failed`` slowly.
        """
        if self.unreachable is None:
            if self._connected != tries.connected:
                return False
            self.unreachable = exc
            self.stop()
            if self._on_unreachable is not None:
                self._on_unreachable(exc)
        return True

    async def _retrying(
        self,
        request: Request,
        signed: Request,
        call: _Call,
        tries: _Tries,
        failed: Exception | None,
    ) -> Exchange:
        # stamina (and tenacity under it) is imported at the first retry: most runs of a
        # healthy API never need it, and it costs start-up time in every run.
        import stamina

        log_retries()  # our own retry lines, not stamina's
        async for attempt in stamina.retry_context(
            on=self._hook,
            attempts=self._policy.attempts,
            timeout=None,
            wait_initial=self._policy.wait_initial,
            wait_max=self._policy.wait_max,
            wait_jitter=self._policy.wait_jitter,
        ):
            with attempt:
                if failed is not None:
                    # Replay the fast path's failure, so that stamina counts that attempt
                    # and backs off exactly as if it had made it itself.
                    replay, failed = failed, None
                    raise replay
                return await self._attempt(request, signed, call, tries)
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _attempt(
        self, request: Request, signed: Request, call: _Call | None, tries: _Tries
    ) -> Exchange:
        if self._stopping:
            raise RunStopped("the run is stopping")
        retry = tries.attempts > 0
        if retry:
            self.stats.retries += 1
        tries.attempts += 1
        try:
            response = await self._send_once(signed, request.location_id, call)
        except ConnectFailed:
            self._tell(request.location_id, None, retry=retry, reached=False)
            raise  # it never reached the server
        except TransportError:
            self._tell(request.location_id, None, retry=retry)
            tries.ambiguous = True  # it may have reached the server
            raise
        self._tell(request.location_id, response, retry=retry)
        if response.status >= 500:
            tries.ambiguous = True
        if response.status in RETRYABLE_STATUSES:
            raise HTTPStatusError(f"HTTP {response.status}", request=request, response=response)
        return Exchange(response=response, attempts=tries.attempts, ambiguous=tries.ambiguous)

    async def _send_once(
        self, signed: Request, location_id: LocationId, call: _Call | None
    ) -> Response:
        gate = self._gates[location_id]
        async with gate.slot() as slot:
            if self._stopping:  # the wait for a slot may have outlived the run
                raise RunStopped("the run is stopping")
            if self._verbose:
                self._log.debug("sending", method=signed.method, path=urlsplit(signed.url).path)
            if call is not None:
                call.sending = True
            try:
                response = await self._transport.send(signed)
            except ConnectFailed as exc:
                self.stats.connect_failures += 1
                if self._verbose:
                    self._log.debug("could not connect", reason=describe_failure(exc))
                raise
            except TransportError as exc:
                self._reached(signed.method)
                self.stats.transport_errors += 1
                if self._verbose:
                    self._log.debug("no answer", reason=describe_failure(exc))
                raise
            finally:
                if call is not None:
                    call.sending = False
            self._reached(signed.method)
            if self._verbose:
                self._log.debug(
                    "answer",
                    method=signed.method,
                    path=urlsplit(signed.url).path,
                    status=response.status,
                    ms=round(response.elapsed * 1000),
                )
            self.latency.answered(response.elapsed)
            throttled = response.status == 429
            if throttled:
                self.stats.rate_limited += 1
            elif response.status >= 500:
                self.stats.server_errors += 1
            limit = gate.limit
            # Inside the slot: the limiter matches the answer to the request it answers.
            gate.observe(self._read_rate(response), throttled=throttled, slot=slot)
        # Lowered by this 429, below what the server advertises (a 429 whose headers only
        # tell the real limit for the first time, after --rate's guess, is no news).
        if throttled and gate.limit < min(limit, gate.advertised):
            self._log.warning(
                "throttled (429) below the expected rate: pacing this location slower",
                limit=gate.limit,
                interval=gate.interval,
            )
        return response

    def _tell(
        self, location: LocationId, response: Response | None, *, retry: bool, reached: bool = True
    ) -> None:
        """Tell the recorder of one attempt, with the location's limit as now known."""
        if self._recorder is not None:
            gate = self._gates[location]
            self._recorder.attempt(
                location,
                status=None if response is None else response.status,
                retry=retry,
                reached=reached,
                seconds=0.0 if response is None else response.elapsed,
                limit=gate.limit,
                interval=gate.interval,
            )

    def _reached(self, method: str) -> None:
        """One attempt made a connection: the server saw it (or may have)."""
        self._connected += 1
        self.stats.requests += 1
        self.stats.by_method[method] += 1
