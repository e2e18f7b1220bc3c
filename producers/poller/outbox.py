"""The poller's outbox: readings waiting for the broker, bounded, in order.

Readings are taken on the gateway's schedule whether or not the broker is there. They wait
here until the broker confirms them. While the broker is away the outbox holds up to its
capacity (sized from the schedule to cover ``buffer_seconds`` of readings); beyond that the
oldest are dropped, counted and logged, because recent data is worth more than old.

Bodies are kept zlib-compressed (JSON from the gateway shrinks about tenfold), which keeps
an hour of every kind of reading within a few megabytes on a Raspberry Pi.

The outbox also remembers the latest message of every kind, which is how late joiners are
answered without asking the gateway again. (By kind, not by routing key: the key names the
gateway, and messages taken before the poller learned the DIN must not linger as a kind of
their own.)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import zlib
from dataclasses import dataclass

from powerwall_bus.shared.messages import OutgoingMessage

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A message waiting for the broker (body compressed)."""

    message: OutgoingMessage  # with the body zlib-compressed
    taken_at: float  # epoch seconds the reading was taken, for publish latency

    def expand(self) -> OutgoingMessage:
        """The message with its body as published."""
        return dataclasses.replace(self.message, body=zlib.decompress(self.message.body))


class Outbox:
    """A thread-safe bounded FIFO of messages, plus the latest message of every kind."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._queue: collections.deque[Entry] = collections.deque()
        self._latest: dict[str, OutgoingMessage] = {}
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.dropped = 0
        self.accepted = 0

    def put(self, message: OutgoingMessage, taken_at: float) -> None:
        """Queue a message; drop the oldest one if the outbox is full."""
        compressed = dataclasses.replace(message, body=zlib.compress(message.body, 1))
        with self._lock:
            self._latest[message.type] = message
            if len(self._queue) >= self.capacity:
                lost = self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    _LOGGER.error(
                        "outbox full (%d messages): dropped the oldest (%s); %d dropped so far",
                        self.capacity,
                        lost.message.message_id,
                        self.dropped,
                    )
            self._queue.append(Entry(compressed, taken_at))
            self.accepted += 1
            self._ready.notify()

    def peek(self, limit: int, timeout: float = 0.0) -> list[Entry]:
        """Up to ``limit`` oldest entries, without removing them (waits up to ``timeout``)."""
        with self._lock:
            if not self._queue and timeout > 0:
                self._ready.wait(timeout)
            return [self._queue[i] for i in range(min(limit, len(self._queue)))]

    def remove(self, entry: Entry) -> None:
        """Remove a confirmed entry (it is the oldest unless the outbox overflowed meanwhile)."""
        with self._lock:
            if self._queue and self._queue[0] is entry:
                self._queue.popleft()
            else:
                with contextlib.suppress(ValueError):  # already dropped by an overflow
                    self._queue.remove(entry)

    def latest(self) -> list[OutgoingMessage]:
        """The newest message of every kind (for resync answers)."""
        with self._lock:
            return list(self._latest.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    def wake(self) -> None:
        """Wake a waiting :meth:`peek` (used at shutdown)."""
        with self._lock:
            self._ready.notify_all()
