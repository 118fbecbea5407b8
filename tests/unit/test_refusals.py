"""Refusals: one line per source and window, then a count; delays only past the free ones."""
from __future__ import annotations

import contextlib
import logging

import pytest

from lotc.net import refusals as refusals_module
from lotc.net.refusals import (
    FREE_LOGIN_FAILURES,
    MAX_HELD_PER_SOURCE,
    MAX_LOGIN_DELAY_S,
    Refusals,
    login_delay,
    source_of,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lotc.net.refusals"]


def test_one_line_per_window_then_the_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    refusals = Refusals(window_s=60, clock=clock)
    counts = [refusals.note("10.0.0.9", "failed login", f"try {i}") for i in range(40)]
    refusals.note("::1", "failed login", "other source")
    assert counts == list(range(1, 41))
    assert len(_lines(caplog)) == 2  # one per source
    clock.now += 59
    refusals.sweep()
    assert len(_lines(caplog)) == 2  # the window is still open
    clock.now += 1
    refusals.sweep()
    summary = _lines(caplog)[2]
    assert summary.startswith("40 failed logins from 10.0.0.9 in 60 s"), summary
    assert len(_lines(caplog)) == 3  # ::1 had a single refusal: nothing more to say
    assert refusals.note("10.0.0.9", "failed login", "again") == 1  # a new window


def test_windows_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusals_module, "MAX_SOURCES", 100)
    refusals = Refusals(clock=FakeClock())
    for i in range(1000):
        refusals.note(f"2001:db8::{i:x}", "failed login", "spoofed")
    assert len(refusals._windows) == 100


def test_delays_start_after_the_free_failures_and_are_capped() -> None:
    assert [login_delay(n) for n in range(1, FREE_LOGIN_FAILURES + 1)] == [0.0] * 5
    assert login_delay(FREE_LOGIN_FAILURES + 1) == 0.5
    assert login_delay(FREE_LOGIN_FAILURES + 2) == 1.0
    assert login_delay(10**6) == MAX_LOGIN_DELAY_S


def test_held_refusals_are_bounded_per_source() -> None:
    refusals = Refusals()
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(refusals.hold("10.0.0.9"))
                for _ in range(MAX_HELD_PER_SOURCE + 3)]
        assert held.count(True) == MAX_HELD_PER_SOURCE
        with refusals.hold("10.0.0.10") as other:
            assert other
    with refusals.hold("10.0.0.9") as again:
        assert again


@pytest.mark.parametrize(("peer", "source"), [("127.0.0.1:4000", "127.0.0.1"),
                                              ("[::1]:4000", "::1")])
def test_source_of(peer: str, source: str) -> None:
    assert source_of(peer) == source
