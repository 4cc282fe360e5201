"""The hub's clock of task timeouts, without sockets."""
from __future__ import annotations

from pxmagic.hub.deadlines import Deadlines, Overrun


def test_the_clock_starts_when_the_task_starts_on_its_engine():
    book = Deadlines()
    book.running(0, "a", None, now=0.0)
    book.running(0, "b", 2.0, now=5.0)  # "a" replied at 5 s: "b" starts then, not when it was sent
    assert book.overruns(6.9) == []
    assert book.overruns(7.0) == [Overrun(0, "b", 2.0)]
    assert book.overruns(9.0) == [], "reported once"


def test_the_same_task_seen_again_keeps_its_start_and_nothing_running_clears_it():
    book = Deadlines()
    book.running(1, "a", 1.0, now=0.0)
    book.running(1, "a", 1.0, now=0.9)
    assert book.overruns(1.0) == [Overrun(1, "a", 1.0)]
    book.running(1, "b", 1.0, now=1.0)
    book.running(1, None, None, now=1.5)
    assert book.overruns(5.0) == []
    book.running(2, "c", 1.0, now=0.0)
    book.forget_engine(2)
    assert book.overruns(5.0) == []


def test_started_lists_when_each_running_request_began():
    book = Deadlines()
    book.running(0, "a", None, now=10.0)
    book.running(1, "b", 5.0, now=11.0)
    book.running(1, "b", 5.0, now=12.0)
    assert book.started() == {"a": 10.0, "b": 11.0}
    assert book.started_at(1, "b") == 11.0 and book.started_at(1, "a") is None and book.started_at(7, "b") is None
