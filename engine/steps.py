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
can tell later that the change was its own. A run that only plans (``RunConfig.plan``)
never sends a write: it raises :class:`Planned` at that ``yield`` instead, like any other
error of a send. A kind that lets it through gets the write's ``plan`` as the record's
outcome (``create``, say); a kind may also catch it, to note the change in its location
state as if it had been made (so that later records of the plan see what the run would
have done before them: a label pair taken, a key gone) and re-raise it, or return an
outcome of its own that says more (the labels an update would change)::

        try:
            answer = yield Send(self.routes.update(...), write)
        except Planned:
            state.remember(updated)
            raise
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from .client import Exchange
from .errors import EngineError
from .model import Request

__all__ = ["Planned", "Send", "Steps", "Write", "drive"]

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
    """Raised at a kind's ``yield`` of a write in a plan-only run: nothing was sent, and
    ``write.plan`` is the outcome the record gets unless the kind returns its own."""

    def __init__(self, write: Write) -> None:
        self.write = write
        super().__init__(write.plan)


async def drive(
    steps: Steps[T],
    send: Callable[[Send], Awaitable[Exchange]],
) -> T:
    """Run ``steps`` to its result: each yielded :class:`Send` goes to ``send``, whose answer
    is sent back into the generator, or whose ``EngineError`` (:class:`Planned` included) is
    raised at the ``yield`` (the kind may handle it; if it does not, it propagates from
    here)."""
    try:
        step = next(steps)
        while True:
            try:
                answer = await send(step)
            except EngineError as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        steps.close()
