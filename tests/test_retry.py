"""The one back-off: exact delays with an injected random source and clock."""

from __future__ import annotations

import pytest

from powerwall_bus.shared.retry import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_doubles_to_the_cap_without_jitter() -> None:
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.failures == 7


def test_jitter_draws_between_the_lower_bound_and_the_delay() -> None:
    assert Backoff(first=4.0, jitter=0.5, rng=lambda: 0.0).next_delay() == 4.0
    assert Backoff(first=4.0, jitter=0.5, rng=lambda: 0.75).next_delay() == 2.5
    assert Backoff(first=4.0, jitter=0.25, rng=lambda: 0.5).next_delay() == 3.5
    delays = [Backoff(first=8.0, jitter=0.5).next_delay() for _ in range(200)]
    assert all(4.0 < d <= 8.0 for d in delays) and len(set(delays)) > 100


def test_success_starts_over() -> None:
    backoff = Backoff(first=2.0, cap=60.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(3)] == [2, 4, 8]
    backoff.succeeded()
    assert backoff.failures == 0
    assert backoff.next_delay() == 2


def test_a_healthy_run_starts_over_and_a_short_one_does_not() -> None:
    """The stack's rule: 1 s doubling to 30 s, back to 1 s after a 60 s run."""
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.0, healthy_after=60.0)
    assert [backoff.after_run(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_run(59.0) == 30
    assert backoff.after_run(60.0) == 1
    assert backoff.after_run(3.0) == 2


def test_running_measures_the_run_with_the_clock() -> None:
    clock = Clock()
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.0, healthy_after=60.0, clock=clock)
    assert [backoff.next_delay() for _ in range(3)] == [1, 2, 4]
    backoff.running()
    clock.now += 10
    assert backoff.next_delay() == 8  # ran 10 s: not healthy, keeps doubling
    backoff.running()
    clock.now += 61
    assert backoff.next_delay() == 1  # ran a minute: starts over
    assert backoff.next_delay() == 2  # no run in between: counts on


def test_many_failures_neither_overflow_nor_pass_the_cap() -> None:
    backoff = Backoff(first=1.0, cap=3600.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 3600.0
    assert Backoff(first=2.0, cap=1.5, jitter=0.0).next_delay() == 1.5  # a cap below first wins


@pytest.mark.parametrize(
    "arguments",
    [{"first": 0.0}, {"cap": 0.0}, {"factor": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}],
)
def test_nonsense_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)  # type: ignore[arg-type]
