"""Which of two messages of a kind is the later one: by the poller's order, never by time.

A consumer that keeps the latest message of every kind (the proxy) must not let one message
decide what comes after it. Comparing reading times did: a message dated 2099 (forged, or
from a poller whose clock was wrong) made every real reading look older, and a poller whose
clock NTP stepped back froze the consumer until it caught up. Times are the gateway's
business; order is the poller's. Every message a poller makes carries its **run** (a random
id per poller process) and its **seq** (a counter of that run), see
:class:`~powerwall_bus.shared.messages.RunSequence`. The rules of :class:`RunOrder`:

* **Same run**: the higher ``seq`` is the later message; an equal one is the same message
  again (a redelivery, a resync answer) and changes nothing; a lower one is an older copy
  (a resync answer of what the consumer already has).
* **Another run**: runs are ordered by when the consumer first heard of them, so a message
  of a run heard of before the current one's is older (a restarted poller's leftovers), and
  a run never heard of is a newer poller process.
* **No position** (a Tesla-API publisher's ``MeterStream``, a poller from before ``seq``):
  arrival order, so the message is taken. Nothing can make such a message suppress later ones.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from powerwall_bus.shared.messages import RUN_HEADER, SEQ_HEADER

__all__ = ["Position", "RunOrder", "position_of"]


@dataclass(frozen=True)
class Position:
    """Where a message stands in its poller's order."""

    run: str
    seq: int


def _header_text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def position_of(
    headers: Mapping[str, Any] | None, run: str | None = None, seq: int | None = None
) -> Position | None:
    """A message's position: the envelope's ``run``/``seq`` when given, else the headers'
    (``MeterStream`` has them only there); None when it has none."""
    if run is not None and seq is not None:
        return Position(run, seq)
    headers = headers or {}
    found_run = _header_text(headers.get(RUN_HEADER))
    found_seq = headers.get(SEQ_HEADER)
    if found_run is None or not isinstance(found_seq, int) or isinstance(found_seq, bool):
        return None
    return Position(found_run, found_seq) if found_seq >= 0 else None


class RunOrder:
    """Compares positions; remembers the runs in the order it first heard of them."""

    #: Runs remembered; the oldest is forgotten first (a poller restarting this often
    #: in one consumer's lifetime only makes its oldest leftovers count as new again).
    LIMIT = 64

    def __init__(self) -> None:
        self._runs: dict[str, int] = {}  # run -> when first heard of (increasing)
        self._heard = 0

    def _rank(self, run: str) -> int:
        rank = self._runs.get(run)
        if rank is None:
            self._heard += 1
            rank = self._runs[run] = self._heard
            if len(self._runs) > self.LIMIT:
                del self._runs[next(iter(self._runs))]
        return rank

    def later(self, candidate: Position | None, current: Position | None) -> bool:
        """Whether ``candidate`` comes after ``current`` (the message kept so far) and so
        replaces it. Records ``candidate``'s run."""
        if candidate is None or current is None:
            if candidate is not None:
                self._rank(candidate.run)
            return True  # arrival order
        if candidate.run == current.run:
            return candidate.seq > current.seq
        kept = self._rank(current.run)  # first: a forgotten current run ranks below a new one
        return self._rank(candidate.run) > kept
