"""The shared HTTP pieces: ``Retry-After`` read one way for every client, and the cloud session.

The cloud session is exercised against a real local socket: one that accepts and never
answers (a timeout) and one nobody listens on (refused); both become the caller's own
"unreachable" error, with no requests exception and no URL query in it.
"""

from __future__ import annotations

import email.utils
import socket
from collections.abc import Iterator

import pytest

from powerwall_bus.shared.errors import CloudUnreachable, OctopusUnreachable
from powerwall_bus.shared.http import CloudSession, retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "cap", "expected"),
    [
        (None, None, None),
        ("", None, None),
        ("   ", None, None),
        ("30", None, 30.0),
        (" 7 ", None, 7.0),
        ("7200", 3600.0, 3600.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), None, 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), None, 0.0),  # a past date: now
        ("Wed, 21 Oct 2015 07:28:00 -0000", None, None),  # no zone: not a date to trust
        ("soon", None, None),
        ("-5", None, None),
        ("1.5", None, None),
    ],
)
def test_retry_after_reads_seconds_or_a_dated_gmt_and_nothing_else(
    header: str | None, cap: float | None, expected: float | None
) -> None:
    got = retry_after(header, NOW, cap=cap)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1.0)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_answer_becomes_the_callers_unreachable_error(silent_port: int) -> None:
    session = CloudSession(unreachable=OctopusUnreachable, timeout=0.3)
    try:
        with pytest.raises(OctopusUnreachable, match=r"^Octopus did not answer within 0.3 s$"):
            session.send("GET", f"http://127.0.0.1:{silent_port}/x?token=secret", what="Octopus")
        with pytest.raises(CloudUnreachable) as caught:
            CloudSession(unreachable=CloudUnreachable).send(
                "POST", f"http://127.0.0.1:{_closed_port()}/?token=secret", what="Tesla"
            )
        assert str(caught.value) == "cannot reach Tesla (ConnectionError)"
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert session.requests == 1
    finally:
        session.close()
