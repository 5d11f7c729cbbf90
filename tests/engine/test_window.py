"""The window's count: what a server may still hold against a location, ours and others'."""

from __future__ import annotations

from engine.rates import RateHint
from engine.window import Window


def test_a_request_holds_its_slot_until_one_interval_after_its_answer() -> None:
    """A request counts from send, and its slot frees one interval after it was answered."""
    window = Window(10.0)
    window.sent(0.0)
    window.sent(0.0)
    window.answered(1.0)

    assert window.used(0.0) == 2
    assert window.used(10.5) == 2  # answered at 1.0: still in the window
    assert window.used(11.0) == 1  # left it; the other is still in flight


def test_expiry_is_known_only_for_answered_requests() -> None:
    """Only an answered request has an expiry; one still in flight has none yet."""
    window = Window(10.0)
    window.sent(0.0)
    assert window.expiry(1) is None
    window.sent(0.0)
    window.answered(2.0)

    assert window.expiry(1) == 12.0
    assert window.expiry(2) is None


def test_expiry_merges_ours_and_others_by_age() -> None:
    """The k-th entry to leave is the k-th oldest of our completions and others' bookings."""
    window = Window(10.0)
    window.sent(0.0)
    window.book_others(
        RateHint(limit=5, remaining=2), 5, 1.0, 0.0, throttled=False, inside=True, refresh=False
    )  # the server holds 3: ours and 2 others, learned of at 1.0
    window.answered(3.0)

    assert [window.expiry(k) for k in (1, 2, 3, 4)] == [11.0, 11.0, 13.0, None]


def test_others_are_booked_from_a_count_lower_than_ours_and_unbooked_when_exact() -> None:
    """Remaining below what we sent books the difference as others'; a later count with
    nothing else of ours in flight takes the booking back."""
    window = Window(10.0)
    window.sent(0.0)
    window.book_others(
        RateHint(limit=5, remaining=1), 5, 1.0, 0.0, throttled=False, inside=True, refresh=False
    )
    assert (window.counted, window.booked(), window.used(1.0)) == (True, 3, 4)
    window.answered(1.0)
    window.sent(2.0)
    window.book_others(
        RateHint(limit=5, remaining=3), 5, 2.5, 2.0, throttled=False, inside=True, refresh=False
    )

    assert window.booked() == 0


def test_an_answer_older_than_a_window_books_nobody() -> None:
    """A count that took longer than a window to arrive is out of date: nothing is booked."""
    window = Window(1.0)
    window.sent(0.0)
    window.book_others(
        RateHint(limit=5, remaining=0), 5, 1.5, 0.0, throttled=False, inside=True, refresh=False
    )

    assert (window.counted, window.booked()) == (True, 0)


def test_admitted_leaves_out_refused_and_in_flight_requests() -> None:
    """Our admitted requests are those sent in the last interval, answered, and not 429s."""
    window = Window(10.0)
    for _ in range(4):
        window.sent(0.0)
    window.answered(1.0)
    window.answered(1.0)
    window.answered(1.0)
    window.refused(0.0, 2)

    assert window.admitted(1.0) == 2  # 4 sent: 1 still in flight, 1 refused
    assert window.admitted(10.5) == 0  # all sent more than an interval ago
