"""The shared log limiters: one line per interval for repeats, a reminder during outages."""

from __future__ import annotations

from powerwall_bus.shared.throttle import Reminder, Throttle


def test_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [100.0]
    throttle = Throttle(60.0, clock=lambda: now[0])
    assert throttle.allow("a") == 0
    assert throttle.allow("a") is None and throttle.allow("a") is None
    assert throttle.allow("b") == 0  # another kind has its own allowance
    now[0] += 60.0
    assert throttle.allow("a") == 2
    assert Throttle.suffix(2) == " (and 2 more like it)" and Throttle.suffix(0) == ""


def test_a_reminder_falls_due_once_per_interval_from_the_start_of_an_outage() -> None:
    now = [0.0]
    reminder = Reminder(300.0, clock=lambda: now[0])
    assert not reminder.due()  # no outage started: never due
    reminder.start()
    now[0] = 299.0
    assert not reminder.due()
    now[0] = 300.0
    assert reminder.due() and not reminder.due()
    now[0] = 599.0
    assert not reminder.due()
    now[0] = 600.0
    assert reminder.due()
    reminder.start()  # a new outage starts the count again
    now[0] = 650.0
    assert not reminder.due()
