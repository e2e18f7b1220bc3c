"""Wire ``pwbus octopus`` together: one Octopus thread, one publisher thread, clean shutdown.

The Octopus thread asks for the plan every ``poll_interval`` seconds (later after trouble:
see :mod:`.tracker`) and hands a message to the publisher at once when the plan or the
state changed, and every ``publish_every`` seconds in any case. SIGTERM or Ctrl-C: the
request in flight finishes, the newest message still goes out if the broker is there, the
process exits 0. A refused API key does not end the process (like the poller with a wrong
gateway password): one ERROR line, ``state: "refused"`` in the message, and the key is
tried again every ``refused_retry`` seconds. A broker that refuses our login ends it with
exit status 2.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from powerwall_bus import __version__
from powerwall_bus.producers.octopus.command import OctopusConfig
from powerwall_bus.producers.octopus.publisher import LatestMessage, PlanPublisher
from powerwall_bus.producers.octopus.tracker import RATE_LIMIT_CAP, Tracker
from powerwall_bus.shared.errors import OctopusError
from powerwall_bus.shared.messages import RunSequence
from powerwall_bus.shared.octopus.client import OctopusClient
from powerwall_bus.shared.octopus.message import plan_message
from powerwall_bus.shared.threads import ThreadFailures, guarded

_LOGGER = logging.getLogger(__name__)


class OctopusProducer:
    """The running producer; ``start``/``stop`` make it usable in-process (tests, a stack)."""

    def __init__(self, config: OctopusConfig, *, clock: Callable[[], float] = time.time) -> None:
        settings = config.octopus
        settings.require_account()
        self.config = config
        self._clock = clock
        self.stop_event = threading.Event()
        self._publisher_stop = threading.Event()
        self.client = OctopusClient(
            api_key=settings.api_key,
            account=settings.account_number,
            device_id=settings.device_id,
            url=settings.url,
            token_file=config.token_file,
            timeout=settings.timeout,
            user_agent=f"powerwall-bus/{__version__}",
            clock=clock,
        )
        self.tracker = Tracker(
            settings.account_number,
            poll_interval=settings.poll_interval,
            refused_retry=settings.refused_retry,
            started=clock(),
        )
        self.sequence = RunSequence()
        self.slot = LatestMessage()
        self.publisher = PlanPublisher(config.amqp, self.slot, self._publisher_stop)
        self.failures = ThreadFailures()
        self._threads: list[threading.Thread] = []
        self.polls = 0

    def _publish(self, now: float) -> None:
        self.slot.put(plan_message(self.tracker.message(now), self.sequence))

    def poll_once(self) -> tuple[float, bool]:
        """Ask Octopus once and hand the message over if anything changed: (when to ask
        next, whether a message was handed over)."""
        self.polls += 1
        try:
            outcome = self.tracker.succeeded(self.client.plan(), self._clock())
        except OctopusError as exc:
            outcome = self.tracker.failed(exc, self._clock())
        if outcome.publish:
            self._publish(self._clock())
        return outcome.next_poll, outcome.publish

    def run(self) -> None:
        """The Octopus thread: poll and publish until stopped."""
        settings = self.config.octopus
        every = settings.publish_every
        # The longest wait there can be: a clock stepped back must not stall us longer.
        longest = max(settings.poll_interval, settings.refused_retry, RATE_LIMIT_CAP)
        next_poll = self._clock()
        next_publish = next_poll + every
        while not self.stop_event.is_set():
            now = self._clock()
            next_poll = min(next_poll, now + longest)
            next_publish = min(next_publish, now + every)
            if now >= next_poll:
                next_poll, published = self.poll_once()
                if published:
                    next_publish = self._clock() + every
            now = self._clock()
            if now >= next_publish:
                self._publish(now)
                next_publish = now + every
            self.stop_event.wait(max(0.0, min(next_poll, next_publish) - self._clock()))

    def start(self) -> OctopusProducer:
        """Start the Octopus and publisher threads."""
        _LOGGER.info(
            "octopus starting: account %s, %s every %.0f s, broker %s",
            self.config.octopus.account_number,
            self.config.octopus.url,
            self.config.octopus.poll_interval,
            self.config.amqp.safe_url,
        )
        self._threads = [
            threading.Thread(target=guarded(self.run, "octopus", self.failures), name="octopus"),
            threading.Thread(
                target=guarded(self.publisher.run, "publisher", self.failures), name="publisher"
            ),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop polling, send what waits, close everything."""
        self.stop_event.set()
        if self._threads:
            self._threads[0].join(timeout)
        self._publisher_stop.set()
        self.slot.wake()
        if self._threads:
            self._threads[1].join(timeout)
        self.client.close()

    def alive(self) -> bool:
        """True while both threads run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)


def run_octopus(config: OctopusConfig) -> int:
    """Run until SIGTERM/SIGINT; exit status 0 after a clean shutdown (2 when the broker
    refused our settings, raised for ``pwbus`` to print)."""
    producer = OctopusProducer(config)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("received %s: shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    producer.failures.wake_with(stopping.set)
    producer.start()
    while not stopping.wait(1.0):
        if not producer.alive() and not producer.failures.failed.is_set():
            _LOGGER.error("an octopus thread ended unexpectedly; exiting")
            producer.stop()
            return 1
    producer.stop()
    status = producer.failures.exit_status()
    _LOGGER.info("octopus stopped")
    return status
