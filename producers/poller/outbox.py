"""The poller's outbox: readings waiting for the broker, bounded, in order.

Readings are taken on the gateway's schedule whether or not the broker is there. They wait
here until the broker confirms them. While the broker is away the outbox holds up to its
capacity (sized from the schedule to cover ``buffer_seconds`` of readings); beyond that the
oldest are dropped, counted and logged, because recent data is worth more than old.

Bodies are kept zlib-compressed (JSON from the gateway shrinks about tenfold), which keeps
an hour of every kind of reading within a few megabytes on a Raspberry Pi.

With a :class:`~powerwall_bus.producers.poller.journal.Journal` the outbox is also on disk
(``poller.outbox_dir``, by default the state folder): every message is written there as it
enters, the broker's confirms and the bound's drops are recorded, and the backlog a previous
run left is replayed first, in order. The journal's docstring says what each failure loses.

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
import time
import zlib
from dataclasses import dataclass

from powerwall_bus.producers.poller.journal import Journal
from powerwall_bus.shared.messages import OutgoingMessage

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A message waiting for the broker (body compressed)."""

    message: OutgoingMessage  # with the body zlib-compressed
    taken_at: float  # epoch seconds the reading was taken, for publish latency
    seq: int = -1  # its number in the journal (-1: in memory only)

    def expand(self) -> OutgoingMessage:
        """The message with its body as published."""
        return dataclasses.replace(self.message, body=zlib.decompress(self.message.body))


class Outbox:
    """A thread-safe bounded FIFO of messages, plus the latest message of every kind."""

    def __init__(self, capacity: int, journal: Journal | None = None) -> None:
        self.capacity = max(1, capacity)
        self._queue: collections.deque[Entry] = collections.deque()
        self._latest: dict[str, OutgoingMessage] = {}
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.dropped = 0
        self.accepted = 0
        self.replayed = 0
        self._journal = journal
        if journal is not None:
            self._replay(journal)

    def _replay(self, journal: Journal) -> None:
        """Queue the backlog a previous run left on disk, oldest first."""
        backlog = journal.open()
        for record in backlog:
            self._queue.append(Entry(record.message, record.taken_at, record.seq))
            self._latest[record.message.type] = dataclasses.replace(
                record.message, body=zlib.decompress(record.message.body)
            )
            while len(self._queue) > self.capacity:
                self._drop_oldest()
        self.replayed = len(self._queue)
        if backlog:
            _LOGGER.info(
                "outbox: %d messages from the previous run wait for the broker (in %s)",
                self.replayed,
                journal.folder,
            )

    def put(self, message: OutgoingMessage, taken_at: float) -> None:
        """Queue a message; drop the oldest one if the outbox is full."""
        compressed = dataclasses.replace(message, body=zlib.compress(message.body, 1))
        with self._lock:
            self._latest[message.type] = message
            if len(self._queue) >= self.capacity:
                self._drop_oldest()
            seq = self._append_to_journal(compressed, taken_at)
            self._queue.append(Entry(compressed, taken_at, seq))
            self.accepted += 1
            self._ready.notify()

    def _drop_oldest(self) -> None:
        lost = self._queue.popleft()
        self.dropped += 1
        self._mark_done()
        if self.dropped == 1 or self.dropped % 100 == 0:
            _LOGGER.error(
                "outbox full (%d messages): dropped the oldest (%s); %d dropped so far",
                self.capacity,
                lost.message.message_id,
                self.dropped,
            )

    def _append_to_journal(self, compressed: OutgoingMessage, taken_at: float) -> int:
        if self._journal is None:
            return -1
        try:
            return self._journal.append(compressed, taken_at)
        except OSError as exc:  # a full or failing card: keep going in memory
            _LOGGER.error(
                "outbox journal in %s failed (%s): holding messages in memory only from now",
                self._journal.folder,
                exc.strerror or exc,
            )
            with contextlib.suppress(OSError):
                self._journal.close()
            self._journal = None
            return -1

    def _mark_done(self) -> None:
        """Tell the journal that everything before the oldest queued message is done."""
        if self._journal is None:
            return
        head = next((e.seq for e in self._queue if e.seq >= 0), self._journal.next_seq)
        self._journal.done_below(head)

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
            self._mark_done()

    def latest(self) -> list[OutgoingMessage]:
        """The newest message of every kind (for resync answers)."""
        with self._lock:
            return list(self._latest.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def journal(self) -> Journal | None:
        """The journal on disk, if there is one (and it has not failed)."""
        return self._journal

    def close(self) -> None:
        """Record what is done and close the journal (what is left is replayed next start)."""
        with self._lock:
            if self._journal is not None:
                journal, self._journal = self._journal, None
                journal.close()
                _LOGGER.info(
                    "outbox journal: %d bytes written in %.0f s, %d fsyncs, %d messages left",
                    journal.bytes_written,
                    time.monotonic() - journal.opened_at,
                    journal.syncs,
                    len(self._queue),
                )

    def wake(self) -> None:
        """Wake a waiting :meth:`peek` (used at shutdown)."""
        with self._lock:
            self._ready.notify_all()
