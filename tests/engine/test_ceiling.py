"""The learned ceiling: which 429s lower a location's limit, and how it probes back up."""

from __future__ import annotations

from engine.ceiling import Ceiling
from engine.rates import RateHint
from engine.window import Window


def lowered_to_four() -> tuple[Ceiling, Window]:
    """A ceiling of 4 under an advertised 10, set at time 0 by a 429 that reported room."""
    window = Window(1.0)
    ceiling = Ceiling(10, window)
    assert ceiling.refused(RateHint(limit=10, remaining=6), 0, 0.0, next_seq=1) is None
    return ceiling, window


def test_the_limit_is_the_advertised_one_until_a_429_says_otherwise() -> None:
    """Without a 429 the limit is what the server advertises, and follows it."""
    ceiling = Ceiling(10, Window(1.0))
    assert ceiling.limit == 10
    ceiling.advertised = 20

    assert (ceiling.limit, ceiling.may_probe(0.0)) == (20, False)


def test_a_429_with_room_left_lowers_the_ceiling_to_what_the_window_held() -> None:
    """Refused while the server reports room: the ceiling is Max - Remaining."""
    ceiling, _ = lowered_to_four()

    assert ceiling.limit == 4


def test_a_burst_of_429s_is_one_signal() -> None:
    """A 429 to a request sent before the last 429 arrived changes nothing but the pause."""
    ceiling, _ = lowered_to_four()

    assert ceiling.refused(RateHint(remaining=9, retry_after=3.0), 0, 0.1, next_seq=2) == 3.0
    assert ceiling.limit == 4


def test_a_probe_waits_out_the_quiet_period_and_a_count_confirms_it() -> None:
    """Two windows after a cut, one request may go at ceiling + 1; a server count that held
    that many and admitted confirms it, and the next level may follow at once."""
    ceiling, window = lowered_to_four()
    assert not ceiling.may_probe(1.9)
    assert ceiling.may_probe(2.0)
    window.sent(2.0)
    ceiling.probe(5)
    assert (ceiling.limit, ceiling.probing, ceiling.may_probe(2.0)) == (5, True, False)
    ceiling.answered(5, RateHint(limit=10, remaining=5), 2.1)

    assert (ceiling.limit, ceiling.probing, ceiling.may_probe(2.1)) == (5, False, True)


def test_a_refused_probe_returns_to_the_level_that_worked_and_waits_twice_as_long() -> None:
    """A 429 to the probe puts the ceiling back, without a pause, and doubles the quiet."""
    ceiling, window = lowered_to_four()
    window.sent(2.0)
    ceiling.probe(5)

    assert ceiling.refused(RateHint(limit=10, remaining=0), 5, 2.1, next_seq=6) is None
    assert (ceiling.limit, ceiling.probing) == (4, False)
    assert not ceiling.may_probe(6.0)
    assert ceiling.may_probe(6.1)  # four windows later


def test_an_unexplained_429_is_waited_out_once_and_a_repeat_lowers_the_ceiling() -> None:
    """A 429 without counts first costs a pause of one window; a repeat within eight windows
    lowers the ceiling to how many of ours the window admitted."""
    window = Window(1.0)
    ceiling = Ceiling(10, window)
    assert ceiling.refused(RateHint(), 0, 0.0, next_seq=1) == 1.0
    assert ceiling.limit == 10
    for _ in range(3):
        window.sent(1.0)
        window.answered(1.2)
    window.sent(1.4)  # the one refused below, still in flight

    assert ceiling.refused(RateHint(), 4, 1.5, next_seq=5) == 1.0
    assert ceiling.limit == 3
