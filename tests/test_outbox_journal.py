"""The outbox on disk: replay order, the bound, compaction, torn records, the lock."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from powerwall_bus.producers.poller.journal import SUFFIX, Journal, read_segment
from powerwall_bus.producers.poller.lock import AlreadyRunning, FolderLock
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.shared.contract import routing_key
from powerwall_bus.shared.messages import OutgoingMessage


def _message(n: int, kind: str = "meters") -> OutgoingMessage:
    return OutgoingMessage(
        routing_key(kind, "DIN-1"),
        b'{"n":%d,"pad":"%s"}' % (n, b"x" * 300),
        f"id-{n}",
        1_700_000_000 + n,
        kind,
        gateway="DIN-1",
        gateway_name="home",
    )


def _outbox(folder: Path, capacity: int = 100, **journal: object) -> Outbox:
    return Outbox(capacity, Journal(folder, **journal))  # type: ignore[arg-type]


def _killed(outbox: Outbox) -> None:
    """What SIGKILL does: descriptors closed (the lock with them), nothing more written."""
    journal = outbox.journal
    assert journal is not None and journal._fd is not None and journal._lock is not None
    os.close(journal._fd)
    journal._lock.release()


def _ids(outbox: Outbox) -> list[str]:
    return [e.message.message_id for e in outbox.peek(10_000)]


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + SUFFIX))


def test_unconfirmed_messages_are_replayed_in_order(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    for n in range(10):
        outbox.put(_message(n), float(n))
    for entry in outbox.peek(4):  # the broker confirmed the first four
        outbox.remove(entry)
    outbox.put(_message(10), 10.0)  # the confirms are written with the next message
    _killed(outbox)
    again = Outbox(100, Journal(tmp_path, sync_interval=5.0))
    assert _ids(again) == [f"id-{n}" for n in range(4, 11)]
    assert again.replayed == 7
    first = again.peek(1)[0]
    assert first.expand() == _message(4)  # headers, properties and body as published
    assert first.taken_at == 4.0
    assert {m.message_id for m in again.latest()} == {"id-10"}
    # new messages go after the backlog and keep counting up
    again.put(_message(11), 11.0)
    assert _ids(again)[-2:] == ["id-10", "id-11"]
    assert [e.seq for e in again.peek(100)] == list(range(4, 12))


def test_a_clean_close_records_the_confirms(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    for n in range(5):
        outbox.put(_message(n), float(n))
    for entry in outbox.peek(5):
        outbox.remove(entry)
    outbox.close()
    again = _outbox(tmp_path)
    assert len(again) == 0 and again.replayed == 0
    again.close()
    assert len(_segments(tmp_path)) == 1  # the confirmed segments are gone


def test_the_bound_drops_the_oldest_on_disk_too(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path, capacity=3)
    for n in range(6):
        outbox.put(_message(n), float(n))
    assert outbox.dropped == 3 and _ids(outbox) == ["id-3", "id-4", "id-5"]
    outbox.close()
    assert _ids(_outbox(tmp_path, capacity=3)) == ["id-3", "id-4", "id-5"]


def test_a_smaller_bound_at_start_keeps_the_newest(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path, capacity=10)
    for n in range(8):
        outbox.put(_message(n), float(n))
    outbox.close()
    smaller = _outbox(tmp_path, capacity=3)
    assert _ids(smaller) == ["id-5", "id-6", "id-7"] and smaller.dropped == 5
    smaller.close()
    assert _ids(_outbox(tmp_path, capacity=10)) == ["id-5", "id-6", "id-7"]


def test_segments_rotate_and_confirmed_ones_are_deleted(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path, capacity=1000, segment_bytes=2000)
    for n in range(100):
        outbox.put(_message(n), float(n))
        if n >= 10:  # the broker is back: confirm everything but the last 10
            entry = outbox.peek(1)[0]
            outbox.remove(entry)
    segments = _segments(tmp_path)
    assert 1 < len(segments) < 15, segments  # bounded: the backlog plus one segment
    total = sum(p.stat().st_size for p in segments)
    assert total < 10 * 2000
    assert outbox.journal is not None and outbox.journal.bytes_written > total
    assert len(outbox) == 10
    again_ids = _ids(outbox)
    outbox.close()
    assert _ids(_outbox(tmp_path, capacity=1000)) == again_ids


def test_a_torn_last_record_is_tolerated(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    for n in range(5):
        outbox.put(_message(n), float(n))
    outbox.close()
    (segment,) = [p for p in _segments(tmp_path) if p.stat().st_size > 100]
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # the last write was cut short
    records, _, clean = read_segment(segment)
    assert not clean and [r.message.message_id for r in records] == [f"id-{n}" for n in range(4)]
    again = _outbox(tmp_path)
    assert _ids(again) == [f"id-{n}" for n in range(4)]
    again.put(_message(5), 5.0)
    again.close()
    assert _ids(_outbox(tmp_path)) == ["id-0", "id-1", "id-2", "id-3", "id-5"]


def test_a_corrupt_record_ends_its_segment(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    for n in range(3):
        outbox.put(_message(n), float(n))
    outbox.close()
    (segment,) = [p for p in _segments(tmp_path) if p.stat().st_size > 100]
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last message's body
    segment.write_bytes(bytes(data))
    assert _ids(_outbox(tmp_path)) == ["id-0", "id-1"]


def test_fsync_is_batched_and_only_for_unconfirmed_messages(tmp_path: Path) -> None:
    now = [0.0]
    outbox = _outbox(tmp_path, sync_interval=5.0, clock=lambda: now[0])
    journal = outbox.journal
    assert journal is not None
    for n in range(10):  # the broker is up: every message is confirmed at once
        now[0] += 2.0
        outbox.put(_message(n), now[0])
        outbox.remove(outbox.peek(1)[0])
    assert journal.syncs == 0
    for n in range(10, 20):  # the broker is away: a sync every 5 s, not every message
        now[0] += 2.0
        outbox.put(_message(n), now[0])
    assert journal.syncs == 3
    outbox.close()
    assert journal.syncs == 4  # what waits is forced to disk at close


def test_the_body_is_stored_compressed(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    for n in range(20):
        outbox.put(_message(n), float(n))
    journal = outbox.journal
    assert journal is not None
    assert journal.bytes_written < 20 * len(_message(0).body) * 0.8
    on_disk = b"".join(p.read_bytes() for p in _segments(tmp_path))
    assert b"x" * 50 not in on_disk  # the bodies are compressed there too
    assert zlib.decompress(outbox.peek(1)[0].message.body) == _message(0).body


def test_a_failing_disk_keeps_the_outbox_in_memory(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.put(_message(0), 0.0)
    journal = outbox.journal
    assert journal is not None and journal._fd is not None
    os.close(journal._fd)  # the next write fails with EBADF
    outbox.put(_message(1), 1.0)
    assert outbox.journal is None
    assert _ids(outbox) == ["id-0", "id-1"]


def test_the_folder_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path / "poller.lock", what="gateway 'home'").acquire()
    with pytest.raises(AlreadyRunning) as caught:
        FolderLock(tmp_path / "poller.lock", what="gateway 'home'").acquire()
    message = str(caught.value)
    assert f"another poller (pid {os.getpid()})" in message and "\n" not in message
    Journal(tmp_path / "j").open()
    with pytest.raises(AlreadyRunning, match=r"poller\.outbox_dir: another poller"):
        Journal(tmp_path / "j").open()
    lock.release()
    FolderLock(tmp_path / "poller.lock", what="gateway 'home'").acquire().release()
