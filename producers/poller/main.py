"""Wire the poller together: one reader thread, one publisher thread, clean shutdown.

SIGTERM or Ctrl-C: the reader finishes the request in flight and stops; a final status is
queued; the publisher gets a few seconds to deliver what is left; the process exits 0.
What the broker has not confirmed by then stays in the outbox on disk and is published
first at the next start.

One poller per gateway: the poller holds an exclusive lock on ``poller[-NAME].lock`` in the
state folder (and the outbox journal one on its own folder); a second poller for the same
gateway and folder stops at once with one line naming the pid that holds it (exit 2).
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from powerwall_bus.producers.poller.command import PollerConfig
from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.journal import Journal
from powerwall_bus.producers.poller.lock import FolderLock
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.publisher import Publisher
from powerwall_bus.producers.poller.reader import GatewayReader, intervals_for, messages_per_hour
from powerwall_bus.producers.poller.relay import ControlRelay, Inbox
from powerwall_bus.shared.gateway.client import GatewayClient
from powerwall_bus.shared.settings import GatewaySettings, PollerSettings
from powerwall_bus.shared.threads import ThreadFailures, guarded

_LOGGER = logging.getLogger(__name__)


def outbox_capacity(settings: PollerSettings) -> int:
    """Messages needed to hold ``buffer_seconds`` of every kind at the configured cadences."""
    return math.ceil(messages_per_hour(settings) * settings.buffer_seconds / 3600.0)


def _file_part(gateway: GatewaySettings) -> str:
    """``-NAME`` for a named gateway (several pollers may share a state folder), else ''."""
    if not gateway.name:
        return ""
    return "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gateway.name)[:100]


def lock_path(gateway: GatewaySettings) -> Path:
    """The file one poller per gateway and state folder holds locked."""
    assert gateway.state_dir is not None
    return gateway.state_dir / f"poller{_file_part(gateway)}.lock"


def journal_folder(gateway: GatewaySettings, settings: PollerSettings) -> Path:
    """Where this gateway's outbox lives on disk."""
    base = settings.outbox_dir or gateway.state_dir
    assert base is not None
    return Path(base).expanduser() / f"outbox{_file_part(gateway)}"


class Poller:
    """The running poller; ``start``/``stop`` make it usable in-process (tests, the stack)."""

    def __init__(self, config: PollerConfig) -> None:
        config.gateway.require_login()
        self.config = config
        self.stop_event = threading.Event()  # stops reading
        self._publisher_stop = threading.Event()  # set once the final status is queued
        name = f"gateway {config.gateway.name!r}" if config.gateway.name else "this gateway"
        self._lock = FolderLock(lock_path(config.gateway), what=name).acquire()
        try:
            journal = None
            if config.poller.outbox_on_disk:
                journal = Journal(
                    journal_folder(config.gateway, config.poller),
                    sync_interval=config.poller.outbox_sync_interval,
                )
            self.outbox = Outbox(outbox_capacity(config.poller), journal)
            self.client = GatewayClient(config.gateway)
        except BaseException:
            if journal is not None:
                journal.close()
            self._lock.release()
            raise
        self.health = Health(intervals_for(config.poller), time.time())
        # Signed Max Backup commands from the bus, posted by the reader between its reads.
        self.inbox = Inbox() if config.poller.relay_commands else None
        self._relay_stop = threading.Event()  # set after the reader: its last answer goes out
        self.relay = (
            ControlRelay(config.amqp, self.client, self.inbox, self._relay_stop)
            if self.inbox is not None
            else None
        )
        self.reader = GatewayReader(
            self.client,
            config.poller,
            self.outbox,
            self.health,
            self.stop_event,
            name=config.gateway.name,
            inbox=self.inbox,
        )
        self.publisher = Publisher(
            config.amqp,
            self.outbox,
            self.health,
            self._publisher_stop,
            backoff_max=min(30.0, config.poller.backoff_max),
            resync_rate=config.poller.resync_rate,
            writer_queue=config.writer,
        )
        self._threads: list[threading.Thread] = []
        self.failures = ThreadFailures()  # what ended a thread, if one ended on its own

    def start(self) -> Poller:
        """Start the reader and publisher threads."""
        _LOGGER.info(
            "poller starting: gateway %s, broker %s, outbox room for %d messages (%d waiting "
            "from the previous run)",
            self.config.gateway.base_url,
            self.config.amqp.safe_url,
            self.outbox.capacity,
            self.outbox.replayed,
        )
        self._reader_thread = threading.Thread(
            target=guarded(self.reader.run, "gateway-reader", self.failures),
            name="gateway-reader",
        )
        self._publisher_thread = threading.Thread(
            target=guarded(self.publisher.run, "publisher", self.failures), name="publisher"
        )
        self._threads = [self._reader_thread, self._publisher_thread]
        if self.relay is not None:
            self._relay_thread = threading.Thread(
                target=guarded(self.relay.run, "control-relay", self.failures),
                name="control-relay",
            )
            self._threads.append(self._relay_thread)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop reading, deliver what is left, close everything."""
        self.stop_event.set()
        if self.inbox is not None:
            self.inbox.wake()
        if self._threads:
            self._reader_thread.join(timeout)
            self.reader.publish_final_status()
        self._relay_stop.set()
        if self._threads and self.relay is not None:
            self._relay_thread.join(timeout)
        self._publisher_stop.set()
        self.outbox.wake()
        if self._threads:
            self._publisher_thread.join(timeout)
        self.client.close()
        self.outbox.close()
        self._lock.release()

    def alive(self) -> bool:
        """True while both threads run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)


def run_poller(config: PollerConfig) -> int:
    """Run until SIGTERM/SIGINT; exit status 0 after a clean shutdown.

    A thread that ends on its own ends the process: a configuration error (the broker
    refused our login) is raised for ``pwbus`` to print and exit 2; anything else was logged
    by the thread's guard, and the status is 1 so a supervisor restarts us.
    """
    poller = Poller(config)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("received %s: shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poller.failures.wake_with(stopping.set)  # half a poller is no poller: stop it all
    poller.start()
    while not stopping.wait(1.0):
        if not poller.alive() and not poller.failures.failed.is_set():  # returned: a bug
            _LOGGER.error("a poller thread ended unexpectedly; exiting so a supervisor restarts us")
            poller.stop()
            return 1
    poller.stop()
    status = poller.failures.exit_status()  # raises a thread's PwbusError (exit 2 or 1)
    _LOGGER.info("poller stopped")
    return status
