import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from carnet.core import clock

UTC = dt.timezone.utc


def test_now_is_aware_and_current_when_not_frozen():
    before = dt.datetime.now(UTC)
    now = clock.now()
    after = dt.datetime.now(UTC)
    assert now.tzinfo is not None
    assert before <= now <= after


def test_frozen_clock_returns_the_same_instant_until_the_block_ends():
    at = dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    with clock.frozen(at):
        assert clock.now() == at
        assert clock.now() == at
    assert clock.now() != at
    assert abs(clock.now() - dt.datetime.now(UTC)) < dt.timedelta(seconds=5)


def test_frozen_blocks_nest_and_restore_the_outer_instant():
    outer = dt.datetime(2026, 1, 1, tzinfo=UTC)
    inner = dt.datetime(2026, 6, 1, tzinfo=UTC)
    with clock.frozen(outer):
        with clock.frozen(inner):
            assert clock.now() == inner
        assert clock.now() == outer


def test_frozen_clock_is_restored_after_an_exception():
    at = dt.datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        with clock.frozen(at):
            raise RuntimeError("boom")
    assert clock.now() != at


def test_frozen_refuses_a_naive_datetime():
    with pytest.raises(ValueError):
        with clock.frozen(dt.datetime(2026, 3, 1, 3, 0)):
            pass


def test_today_is_decided_by_the_time_zone():
    # 03:00 UTC on 1 March is still the evening of 28 February on the Pacific coast.
    with clock.frozen(dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC)):
        assert clock.today("America/Vancouver") == dt.date(2026, 2, 28)
        assert clock.today("America/Toronto") == dt.date(2026, 2, 28)
        assert clock.today("UTC") == dt.date(2026, 3, 1)
        assert clock.today("Asia/Tokyo") == dt.date(2026, 3, 1)
        assert clock.today(ZoneInfo("America/Vancouver")) == dt.date(2026, 2, 28)


def test_today_crosses_midnight_at_local_midnight():
    vancouver = ZoneInfo("America/Vancouver")
    with clock.frozen(
        dt.datetime(2026, 3, 1, 0, 0, tzinfo=vancouver) - dt.timedelta(microseconds=1)
    ):
        assert clock.today("America/Vancouver") == dt.date(2026, 2, 28)
    with clock.frozen(dt.datetime(2026, 3, 1, 0, 0, tzinfo=vancouver)):
        assert clock.today("America/Vancouver") == dt.date(2026, 3, 1)


def test_frozen_instant_in_another_zone_is_the_same_instant():
    at = dt.datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    with clock.frozen(at):
        assert clock.now() == dt.datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
        assert clock.today("Pacific/Auckland") == dt.date(2026, 7, 1)
        assert clock.today("Pacific/Honolulu") == dt.date(2026, 7, 1)


def test_unknown_time_zone_is_refused():
    with pytest.raises(ZoneInfoNotFoundError):
        clock.today("Mars/Olympus")
