"""The rules that refuse replayed requests, and the log that tells of refusals, without a cluster."""
from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta, timezone

from pxmagic.replay import REQUEST_WINDOW, RefusalLog, ReplayGuard

START = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def iso(seconds_after_start: float) -> str:
    return (START + timedelta(seconds=seconds_after_start)).isoformat().replace("+00:00", "Z")


def test_a_request_is_accepted_once():
    guard = ReplayGuard(clock=Clock())
    assert guard.refusal(b"sig-1", iso(0)) is None
    assert guard.refusal(b"sig-2", iso(0)) is None
    assert "received before" in guard.refusal(b"sig-1", iso(0))


def test_requests_outside_the_window_are_refused_with_the_reason():
    guard = ReplayGuard(window=60, clock=Clock())
    assert "dated 61 s ago" in guard.refusal(b"old", iso(-61))
    assert "ahead of this host's clock" in guard.refusal(b"future", iso(61))
    assert guard.refusal(b"skewed but within", iso(-59)) is None
    assert guard.refusal(b"also within", iso(59)) is None


def test_undated_and_badly_dated_requests_are_refused():
    guard = ReplayGuard(clock=Clock())
    for date in (None, "", "yesterday", 5):
        assert "not an ISO 8601 time" in guard.refusal(b"sig", date)


def test_jupyter_client_date_forms_are_understood():
    guard = ReplayGuard(clock=Clock())
    for n, date in enumerate([iso(0), START.isoformat(), START.replace(tzinfo=None).isoformat(),
                              START.astimezone(timezone(timedelta(hours=1))).isoformat()]):
        assert guard.refusal(f"sig-{n}".encode(), date) is None, date


def test_no_replay_passes_in_hours_of_traffic_and_memory_stays_bounded():
    """Far past the 65,536 signatures after which jupyter_client's history forgets at random."""
    clock = Clock()
    guard = ReplayGuard(window=60, clock=clock)
    rng = random.Random(1)
    sent: list[tuple[bytes, str]] = []
    largest = 0
    for n in range(300_000):  # 100 requests a second for 50 minutes
        clock.now = START.timestamp() + n / 100
        request = (f"sig-{n}".encode(), iso(n / 100 - rng.random()))  # a second of transit at most
        assert guard.refusal(*request) is None
        sent.append(request)
        if n % 1000 == 999:
            for replay in rng.sample(sent, 20):
                assert guard.refusal(*replay) is not None, replay
        largest = max(largest, len(guard))
    assert largest <= 100 * (60 + 2) + 100  # one window's worth (and a second's sweep)


def test_the_window_is_minutes_not_seconds():
    """A stalled laptop or a busy hub must not turn honest requests into refusals."""
    assert REQUEST_WINDOW >= 300


def test_a_flood_of_refusals_costs_a_line_a_period(caplog):
    clock = Clock()
    refusals = RefusalLog(logging.getLogger("test.refusals"), period=10, clock=clock)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for n in range(10_000):
            clock.now = START.timestamp() + n / 1000  # ten seconds of junk
            refusals.refused("a client message", "its signature is missing or wrong")
        clock.now += 1
        refusals.refused("a client message", "it was received before (a replay)")
    assert refusals.total == 10_001
    assert len(caplog.records) == 2
    assert "1 refused so far" in caplog.records[0].getMessage()
    last = caplog.records[1].getMessage()
    assert "10001 refused so far" in last and "9999 more unlogged" in last and "a replay" in last
