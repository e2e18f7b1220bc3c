"""The outbox on disk: an append-only journal of messages not yet confirmed by the broker.

Layout: one folder per gateway (``<outbox_dir>/outbox-<name>/``) holding numbered segment
files (``00000001.seg``, ...) and a ``lock`` file. A segment is a sequence of frames::

    u32 length | u32 crc32(payload) | payload
    payload = b"M" seq taken_at meta body   a message (meta: JSON of its other fields;
                                            body zlib-compressed)
            | b"A" head                     every seq below head is done

Messages get increasing sequence numbers. The outbox removes messages oldest first (the
broker confirmed them, or the bound dropped them), so "done" is one number, the *head*: an
``A`` frame records it. At start every segment is read in order; the messages at or after
the last head recorded are the backlog, replayed before any new reading. A torn or corrupt
frame ends its segment (it can only be the last one written before a crash or power cut).

Writes, and what each failure loses:

* every message is written (``os.write``, no user-space buffer) when it enters the outbox,
  so it is in the kernel's page cache at once: a crash of the process (SIGKILL, OOM, a bug)
  loses nothing that had entered the outbox; at most the reading in flight (being fetched
  from the gateway) is lost;
* ``fsync`` is batched: when a message is appended while one written at least a second
  earlier is neither confirmed nor synced, and ``sync_interval`` seconds (or ``sync_every``
  messages) have passed since the last one. With the broker up, messages are confirmed
  within milliseconds and nothing is forced to the card; the kernel writes the page cache
  back on its own schedule (about every 30 s on Linux). A power cut therefore loses at most
  the readings of the last ``sync_interval`` seconds plus one reading interval that the
  broker had not confirmed (and may replay a few confirmed ones again: same
  ``message_id``, consumers drop them). ``sync_interval`` 0 forces every message to the
  card as it is written;
* ``A`` frames are written with the next message (or at close), never on their own, so a
  crash replays at most the messages confirmed since the last reading (duplicates, not
  losses).

A new segment is started at every start and when the current one reaches
``segment_bytes``; older segments are deleted once every message in them is done, so the
folder holds the backlog plus at most one segment.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.producers.poller.lock import FolderLock
from powerwall_bus.shared.messages import OutgoingMessage

_LOGGER = logging.getLogger(__name__)

_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
_MESSAGE = struct.Struct("<cQdH")  # b"M", seq, taken_at, length of the JSON meta
_ACK = struct.Struct("<cQ")  # b"A", head
_MAX_FRAME = 64 * 1024 * 1024
#: A message younger than this is on its way to the broker, not held: no fsync for it yet.
_GRACE = 1.0
SUFFIX = ".seg"
_META_FIELDS = tuple(f for f in dataclasses.fields(OutgoingMessage) if f.name != "body")


@dataclass(frozen=True)
class Record:
    """A message read back from the journal (body still compressed)."""

    seq: int
    message: OutgoingMessage
    taken_at: float


@dataclass
class _Segment:
    path: Path
    last_seq: int = -1  # highest message seq in it (-1: none)


def _encode_message(seq: int, message: OutgoingMessage, taken_at: float) -> bytes:
    # Every field but the body, by name: a field added to OutgoingMessage is kept too.
    meta = {f.name: getattr(message, f.name) for f in _META_FIELDS}
    encoded = json.dumps(meta, separators=(",", ":")).encode()
    head = _MESSAGE.pack(b"M", seq, taken_at, len(encoded))
    return _frame(head + encoded + message.body)


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_segment(path: Path) -> tuple[list[Record], int, bool]:
    """The messages and the highest head in one segment file, and whether it ended clean."""
    data = path.read_bytes()
    records: list[Record] = []
    head = 0
    offset = 0
    while offset < len(data):
        if len(data) - offset < _FRAME.size:
            return records, head, False
        length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        payload = data[start : start + length]
        if length > _MAX_FRAME or len(payload) != length or zlib.crc32(payload) != crc:
            return records, head, False
        offset = start + length
        kind = payload[:1]
        if kind == b"A" and length == _ACK.size:
            head = max(head, _ACK.unpack(payload)[1])
        elif kind == b"M" and length >= _MESSAGE.size:
            _, seq, taken_at, meta_length = _MESSAGE.unpack_from(payload)
            meta_end = _MESSAGE.size + meta_length
            try:
                meta = json.loads(payload[_MESSAGE.size : meta_end])
                known = {f.name for f in _META_FIELDS}
                fields = {k: v for k, v in meta.items() if k in known}
                message = OutgoingMessage(body=payload[meta_end:], **fields)
            except (ValueError, TypeError, AttributeError):
                return records, head, False
            records.append(Record(seq, message, taken_at))
        else:
            return records, head, False
    return records, head, True


class Journal:
    """Segments of messages plus the head; not thread-safe (the outbox holds its lock)."""

    def __init__(
        self,
        folder: Path,
        *,
        sync_interval: float = 5.0,
        sync_every: int = 100,
        segment_bytes: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.sync_interval = sync_interval
        self.sync_every = max(1, sync_every)
        self.segment_bytes = segment_bytes
        self._clock = clock
        self._lock: FolderLock | None = None
        self._fd: int | None = None
        self._current: _Segment | None = None
        self._old: list[_Segment] = []
        self._head = 0  # every seq below is done
        self._written_head = 0  # the head last written in an A frame
        self.next_seq = 0
        self._synced_seq = -1  # every message up to this seq is fsync'd (or was done)
        self._unsynced = 0
        self._unsynced_times: collections.deque[tuple[int, float]] = collections.deque()
        self._last_sync = clock()
        self._segment_size = 0
        self.bytes_written = 0  # frames appended since open (the SD card's share)
        self.syncs = 0
        self.opened_at = time.monotonic()

    # ------------------------------------------------------------------ open / close

    def open(self) -> list[Record]:
        """Lock the folder, read the backlog (oldest first) and start a new segment."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = FolderLock(
            self.folder / "lock", what=f"the outbox in {self.folder}", key="poller.outbox_dir"
        )
        self._lock.acquire()
        pending: list[Record] = []
        head = 0
        numbers: list[int] = []
        for path in sorted(self.folder.glob("*" + SUFFIX)):
            stem = path.name[: -len(SUFFIX)]
            if not stem.isdigit():
                continue
            numbers.append(int(stem))
            records, segment_head, clean = read_segment(path)
            if not clean:
                _LOGGER.warning("outbox journal: %s ends in a torn record (ignored)", path.name)
            head = max(head, segment_head)
            pending.extend(records)
            last = max((r.seq for r in records), default=-1)
            self._old.append(_Segment(path, last))
        self.next_seq = max([head] + [r.seq + 1 for r in pending])
        self._head = head
        backlog = [r for r in pending if r.seq >= head]
        backlog.sort(key=lambda r: r.seq)
        self._start_segment(max(numbers, default=0) + 1)
        self._synced_seq = self.next_seq - 1  # what was read back is on disk
        self._delete_done()
        return backlog

    def close(self) -> None:
        """Record the head, fsync if something unconfirmed waits, release the lock."""
        if self._fd is not None:
            try:
                self._write(b"")
                if self._needs_sync():
                    self.sync()
            finally:
                os.close(self._fd)
                self._fd = None
                self._delete_done()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------ writing

    def append(self, message: OutgoingMessage, taken_at: float) -> int:
        """Write one message (body already compressed); its sequence number."""
        seq = self.next_seq
        # Decided on the messages before this one, which had their chance to be confirmed:
        # with the broker up they all were, and nothing is forced to the card.
        due = self.sync_interval <= 0 or (
            self._needs_sync(_GRACE)
            and (
                self._unsynced >= self.sync_every
                or self._clock() - self._last_sync >= self.sync_interval
            )
        )
        self.next_seq += 1
        self._write(_encode_message(seq, message, taken_at))
        assert self._current is not None
        self._current.last_seq = seq
        self._unsynced += 1
        self._unsynced_times.append((seq, self._clock()))
        if due:
            self.sync()
        if self._segment_size >= self.segment_bytes:
            self._rotate()
        return seq

    def done_below(self, head: int) -> None:
        """Every message with a seq below ``head`` is confirmed or dropped (written lazily)."""
        self._head = max(self._head, head)

    def sync(self) -> None:
        """Force what was written to the device."""
        if self._fd is None:
            return
        os.fsync(self._fd)
        self.syncs += 1
        self._synced_seq = self.next_seq - 1
        self._unsynced = 0
        self._unsynced_times.clear()
        self._last_sync = self._clock()

    @property
    def pending(self) -> int:
        """Messages written and not yet done."""
        return self.next_seq - self._head

    def _needs_sync(self, grace: float = 0.0) -> bool:
        """True if a message written ``grace`` seconds ago or earlier is neither synced nor
        confirmed (only those are worth forcing to the card)."""
        unsynced = self._unsynced_times
        while unsynced and unsynced[0][0] < max(self._head, self._synced_seq + 1):
            unsynced.popleft()
        return bool(unsynced) and unsynced[0][1] <= self._clock() - grace

    def _write(self, frames: bytes) -> None:
        assert self._fd is not None
        acked = self._head > self._written_head
        if acked:
            frames = _frame(_ACK.pack(b"A", self._head)) + frames
        if frames:
            os.write(self._fd, frames)  # one call: a crash leaves whole frames or a torn last
            self._segment_size += len(frames)
            self.bytes_written += len(frames)
        if acked:
            self._written_head = self._head
            self._delete_done()

    def _start_segment(self, number: int) -> None:
        path = self.folder / f"{number:08d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        self._current = _Segment(path)
        self._segment_size = 0
        head = _frame(_ACK.pack(b"A", self._head))  # each segment knows the head at its start
        os.write(self._fd, head)
        self._written_head = self._head
        self._segment_size += len(head)
        self.bytes_written += len(head)
        if self.pending:  # the new file must survive a power cut with the backlog
            with contextlib.suppress(OSError):
                dir_fd = os.open(self.folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def _rotate(self) -> None:
        assert self._fd is not None and self._current is not None
        if self._needs_sync():
            self.sync()
        os.close(self._fd)
        self._old.append(self._current)
        number = int(self._current.path.name[: -len(SUFFIX)]) + 1
        self._start_segment(number)
        self._delete_done()

    def _delete_done(self) -> None:
        keep = []
        for segment in self._old:
            if segment.last_seq < self._written_head:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
            else:
                keep.append(segment)
        self._old = keep
