"""How a job kind talks to the network without calling the engine: it yields, the engine sends.

A job kind's work on one record (or on one location, before its records) is a generator. It
yields a :class:`Send` for each request it wants made and receives the :class:`Exchange` that
answered it, or has the request's error raised at the ``yield``; it returns its result (an
``Outcome``, or the location's state). The kind never holds the client, the journal or the
run: the engine drives the generator (:func:`drive`), so the dependency is one-way and a kind
can be tested by feeding its generator answers by hand, with no I/O at all::

    def process(self, record, state, *, noted):
        answer = yield Send(self.routes.create(...), write=Write(plan="create", intent={...}))
        if answer.response.status == 201:
            return Outcome(record=record, status="created", ...)

A :class:`Write` marks a request that changes the server: the engine notes its ``intent`` in
the run's journal before sending it, so that a run killed while the request is on the wire
can tell later that the change was its own; and a run that only plans (sends no write)
stops the generator there and reports the write's ``plan``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from .client import Exchange
from .errors import EngineError
from .model import Request

__all__ = ["Send", "Steps", "Write", "drive"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    """What makes a request a write: its journal intent and its planned outcome."""

    #: outcome reported for the record when the run only plans (e.g. ``create``)
    plan: str
    #: noted in the journal, flushed, before the request is sent (e.g. action and key)
    intent: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` (retried as the engine's policy says) and resume with its answer."""

    request: Request
    write: Write | None = None


#: A kind's work: yields requests, is sent their answers, returns a result of type T.
Steps: TypeAlias = Generator[Send, Exchange, T]


class Planned(EngineError):
    """Raised by a ``send`` that does not write: carries the write's planned outcome."""

    def __init__(self, write: Write) -> None:
        self.write = write
        super().__init__(write.plan)


async def drive(
    steps: Steps[T],
    send: Callable[[Send], Awaitable[Exchange]],
) -> T:
    """Run ``steps`` to its result: each yielded :class:`Send` goes to ``send``, whose answer
    is sent back into the generator, or whose ``EngineError`` is raised at the ``yield``
    (the kind may handle it; if it does not, it propagates from here)."""
    try:
        step = next(steps)
        while True:
            try:
                answer = await send(step)
            except Planned:
                raise
            except EngineError as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        steps.close()
