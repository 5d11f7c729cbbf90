"""Driving a job kind's steps, and preparing each location once."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from engine import (
    Exchange,
    HTTPStatusError,
    LocationError,
    Planned,
    Request,
    Response,
    RunStopped,
    Send,
    Steps,
    Write,
)
from engine.errors import RequestError
from engine.locations import LocationStates
from engine.steps import drive

REQ = Request(method="GET", url="http://127.0.0.1/x", location_id="locA")


def answer(status: int) -> Exchange:
    return Exchange(response=Response(status=status), attempts=1)


def two_reads() -> Steps[list[int]]:
    first = yield Send(REQ)
    second = yield Send(REQ, Write(plan="create", intent={"key": "k"}))
    return [first.response.status, second.response.status]


async def test_each_step_is_sent_and_its_answer_comes_back() -> None:
    """drive sends every yielded step and hands each answer back, in order."""
    sent: list[Send] = []
    statuses = iter([200, 201])

    async def send(step: Send) -> Exchange:
        sent.append(step)
        return answer(next(statuses))

    assert await drive(two_reads(), send) == [200, 201]
    assert [s.write.plan if s.write else None for s in sent] == [None, "create"]


async def test_a_request_error_is_raised_in_the_kind_which_may_handle_it() -> None:
    """An error of a send is raised at the kind's yield; the kind's own handling wins."""

    def handles() -> Steps[str]:
        try:
            yield Send(REQ)
        except HTTPStatusError as exc:
            return f"handled {exc.status}"
        return "not reached"

    async def send(step: Send) -> Exchange:
        raise HTTPStatusError("HTTP 500", request=REQ, response=Response(status=500))

    assert await drive(handles(), send) == "handled 500"


async def test_an_unhandled_error_propagates_and_closes_the_steps() -> None:
    """An error the kind does not handle comes out of drive, and the generator is closed."""
    closed = []

    def ignores() -> Steps[None]:
        try:
            yield Send(REQ)
        finally:
            closed.append(True)

    async def send(step: Send) -> Exchange:
        raise RunStopped("stopping")

    with pytest.raises(RunStopped):
        await drive(ignores(), send)
    assert closed == [True]


async def test_a_planned_write_is_raised_in_the_kind_which_may_answer_it() -> None:
    """In a plan, Planned comes up at the kind's yield: it may note it and return its own."""
    noted: list[str] = []

    def notes_it() -> Steps[str]:
        try:
            yield Send(REQ, Write(plan="update", intent={"key": "k"}))
        except Planned as planned:
            noted.append(planned.write.plan)
            return "would update k"
        return "not reached"

    async def send(step: Send) -> Exchange:
        assert step.write is not None
        raise Planned(step.write)

    assert await drive(notes_it(), send) == "would update k"
    assert noted == ["update"]


async def test_a_planned_write_the_kind_lets_through_leaves_drive() -> None:
    """A kind that does not catch Planned lets it out of drive, carrying the write's plan."""

    async def send(step: Send) -> Exchange:
        if step.write is None:
            return answer(200)
        raise Planned(step.write)

    with pytest.raises(Planned) as raised:
        await drive(two_reads(), send)
    assert raised.value.write.plan == "create"


async def test_a_location_is_prepared_once_for_all_its_records() -> None:
    """Concurrent records of one location share one preparation."""
    calls: list[str] = []

    async def prepare(location: str) -> str:
        calls.append(location)
        await anyio.lowlevel.checkpoint()
        return f"state of {location}"

    states = LocationStates(prepare)
    results: list[object] = []

    async def get() -> None:
        results.append(await states.get("locA"))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(get)

    assert calls == ["locA"]
    assert results == ["state of locA"] * 5


async def test_a_failed_preparation_fails_every_record_with_its_reason() -> None:
    """A request error while preparing becomes the location's error, for each record."""

    async def prepare(location: str) -> str:
        error = RequestError("connection refused", request=REQ)
        error.attempts = 3
        raise error

    states = LocationStates(prepare)
    first, second = await states.get("locA"), await states.get("locA")

    assert isinstance(first, LocationError)
    assert first is second
    assert str(first) == "reading location locA: connection refused"
    assert first.attempts == 3


async def test_forget_drops_a_location_so_memory_follows_the_work() -> None:
    """A forgotten location's state is gone; it would be prepared afresh."""
    calls: list[str] = []

    async def prepare(location: str) -> int:
        calls.append(location)
        return len(calls)

    states = LocationStates(prepare)
    assert await states.get("locA") == 1
    states.forget("locA")

    assert len(states) == 0
    assert await states.get("locA") == 2
