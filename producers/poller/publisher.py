"""The broker side of the poller: publish the outbox in order, with confirms; answer resyncs.

One thread owns the pika connection (pika is not thread-safe). A message leaves the outbox
only when the broker has confirmed it, so a broker outage loses nothing that fits in the
outbox: the reader keeps filling it, this thread reconnects with a capped, jittered
back-off and then drains the backlog oldest first.

A message whose confirm was lost with the connection is sent again after reconnecting
(at-least-once); it keeps its ``message_id``, so a consumer can drop the duplicate.

Late joiners: a consumer publishes a ``control.resync`` request with ``reply_to`` set to its
own queue; the answer is the latest message of every kind, sent straight to that queue.
Requests only mark a requester as waiting (:class:`ResyncGate`): each ``reply_to`` gets at
most one answer a second (more requests within it coalesce into one answer at its end), and
all requesters together at most ``poller.resync_rate`` answers a second (the rest are
dropped and counted in the poller status). Answers go out between the outbox's batches, on
a channel of their own without confirms: a ``reply_to`` the broker refuses closes only that
channel (it is opened again for the next answer), never the connection the readings use.

Before the MySQL writer's first start, its durable queue does not exist and readings would
be routed nowhere; unless ``poller.declare_writer_queue`` is off, the poller declares it
(with the writer's own arguments and bindings) on every connect.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.rivals import Me, Verdict, judge
from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.contract import ANY_GATEWAY, POLLER_STATUS, routing_key
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.messages import (
    APP_ID,
    GATEWAY_HEADER,
    PROCESS_RUN,
    RUN_HEADER,
    OutgoingMessage,
)
from powerwall_bus.shared.publishing import message_properties
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings, WriterSettings
from powerwall_bus.shared.topology import (
    RESYNC,
    dead_letter_limits,
    declare_durable_queue,
    declare_exchange,
    writer_bindings,
)

_LOGGER = logging.getLogger(__name__)

_BATCH = 200
_IDLE_WAIT = 0.1
#: The poller's own resync queue: named (so a least-privilege broker user can be given
#: exactly it), exclusive, and bounded so a flood of requests cannot pile up in the broker.
RESYNC_QUEUE_PREFIX = "pwbus.poller."
RESYNC_QUEUE_LENGTH = 1000


class ResyncGate:
    """Which resync requests get an answer, and when.

    :meth:`request` is called per request and only records it; :meth:`due` returns the
    requesters to answer now. A ``reply_to`` is answered at most once per ``per_requester``
    seconds: a request within that time after an answer waits for its end, and any further
    one until then is coalesced into the same answer (with the newest ``correlation_id``).
    All requesters together get at most ``rate`` answers a second (a token bucket holding
    one second's worth); a due answer finding the bucket empty is dropped, as is a request
    when ``max_pending`` requesters already wait.
    """

    def __init__(
        self,
        rate: float = 20.0,
        per_requester: float = 1.0,
        max_pending: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._per = per_requester
        self._max_pending = max_pending
        self._clock = clock
        self._tokens = rate
        self._refilled = clock()
        self._pending: dict[str, tuple[float, str | None]] = {}
        self._answered_at: dict[str, float] = {}
        self.counts = {"requests": 0, "answered": 0, "coalesced": 0, "dropped": 0, "failed": 0}

    def request(self, reply_to: str, correlation_id: str | None) -> None:
        """Record one request."""
        self.counts["requests"] += 1
        waiting = self._pending.get(reply_to)
        if waiting is not None:
            self._pending[reply_to] = (waiting[0], correlation_id)
            self.counts["coalesced"] += 1
            return
        if len(self._pending) >= self._max_pending:
            self.counts["dropped"] += 1
            return
        now = self._clock()
        last = self._answered_at.get(reply_to)
        due = now if last is None or now - last >= self._per else last + self._per
        self._pending[reply_to] = (due, correlation_id)

    def due(self) -> list[tuple[str, str | None]]:
        """The (reply_to, correlation_id) to answer now; each counted as answered."""
        if not self._pending:
            return []
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        ready = [key for key, (due, _) in self._pending.items() if due <= now]
        answers: list[tuple[str, str | None]] = []
        for reply_to in ready:
            _, correlation_id = self._pending.pop(reply_to)
            if self._tokens < 1.0:
                self.counts["dropped"] += 1
                continue
            self._tokens -= 1.0
            self._answered_at[reply_to] = now
            self.counts["answered"] += 1
            answers.append((reply_to, correlation_id))
        if len(self._answered_at) > 64:
            self._answered_at = {
                key: at for key, at in self._answered_at.items() if now - at < self._per
            }
        return answers

    def failed(self) -> None:
        """An answer could not be sent (the broker refused its ``reply_to``)."""
        self.counts["failed"] += 1


def properties_for(
    message: OutgoingMessage, correlation_id: str | None = None, user_id: str | None = None
) -> pika.BasicProperties:
    """The poller's properties for ``message`` (:func:`message_properties` with its app id)."""
    return message_properties(
        message, app_id=APP_ID, user_id=user_id, correlation_id=correlation_id
    )


class Publisher:
    """Drains the outbox into the exchange; reconnects by itself."""

    def __init__(
        self,
        settings: AmqpSettings,
        outbox: Outbox,
        health: Health,
        stop: threading.Event,
        *,
        backoff_max: float = 30.0,
        flush_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        resync_rate: float = 20.0,
        writer_queue: WriterSettings | None = None,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._health = health
        self._stop = stop
        self._flush_timeout = flush_timeout
        self._clock = clock
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._replies: BlockingChannel | None = None  # resync answers only
        self._writer_queue = writer_queue
        self._resync_gate = ResyncGate(rate=resync_rate)
        health.resync = self._resync_gate.counts  # in the poller status
        self._deadline: float | None = None
        self._link = BrokerLink(
            settings,
            "pwbus-poller",
            stop,
            backoff=Backoff(first=1.0, cap=backoff_max, jitter=0.5),
            on_state=self._state,
            logger=_LOGGER,
        )
        self.published = 0
        self.resyncs = 0
        self._rivals_seen: set[str] = set()
        self._own_runs: set[str] = {PROCESS_RUN.run}

    def run(self) -> None:
        """Publish until stopped, then flush what is left (bounded by ``flush_timeout``).

        Raises BrokerRefused when the broker refuses our settings (the poller then exits 2).
        """
        try:
            self._link.run(self._open, self._pump, wanted=lambda: not self._finished())
        finally:
            self._connection = self._channel = self._replies = None
        left = len(self._outbox)
        if left:
            _LOGGER.warning("stopping with %d messages not yet confirmed by the broker", left)
        _LOGGER.info("publisher stopped after %d messages", self.published)

    def _finished(self) -> bool:
        """After stop: True once the outbox is empty or the flush time is over."""
        if not self._stop.is_set():
            return False
        if self._deadline is None:
            self._deadline = time.monotonic() + self._flush_timeout
        return not len(self._outbox) or time.monotonic() > self._deadline

    # ------------------------------------------------------------------ connection

    def _open(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        if self._writer_queue is not None:
            self._declare_writer_queue(connection, self._writer_queue)
        channel.confirm_delivery()
        queue = f"{RESYNC_QUEUE_PREFIX}{uuid.uuid4().hex[:12]}.resync"
        channel.queue_declare(
            queue=queue,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": RESYNC_QUEUE_LENGTH},
        )
        channel.queue_bind(queue=queue, exchange=self._settings.exchange, routing_key=RESYNC)
        channel.basic_consume(queue=queue, on_message_callback=self._on_resync, auto_ack=True)
        # Every gateway's poller status: another poller for ours is a rival (see rivals.py).
        statuses = f"{RESYNC_QUEUE_PREFIX}{uuid.uuid4().hex[:12]}.rivals"
        channel.queue_declare(
            queue=statuses,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": RESYNC_QUEUE_LENGTH},
        )
        channel.queue_bind(
            queue=statuses,
            exchange=self._settings.exchange,
            routing_key=routing_key(POLLER_STATUS, ANY_GATEWAY),
        )
        channel.basic_consume(queue=statuses, on_message_callback=self._on_status, auto_ack=True)
        self._connection, self._channel, self._replies = connection, channel, None

    def _declare_writer_queue(
        self, connection: pika.BlockingConnection, writer: WriterSettings
    ) -> None:
        """The writer's durable queue, so readings wait there before its first start. On a
        channel of its own: a refusal (no permission, a queue with other arguments) costs a
        WARNING, never the publishing."""
        channel = connection.channel()
        try:
            declare_durable_queue(
                channel,
                self._settings.exchange,
                writer.queue,
                writer.dead_letter_queue,
                writer_bindings(writer.meter_stream),
                limits=dead_letter_limits(
                    writer.dead_letter_max_length, writer.dead_letter_ttl_days
                ),
                vhost=self._settings.vhost,
                logger=_LOGGER,
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            _LOGGER.warning(
                "could not declare the writer's queue %r (%s %s); readings published before "
                "the writer first starts are not kept (poller.declare_writer_queue)",
                writer.queue,
                exc.reply_code,
                " ".join(str(exc.reply_text).split()),
            )
        finally:
            if channel.is_open:
                channel.close()

    def _state(self, up: bool) -> str:
        self._health.broker(up)
        if not up:
            self._connection = self._channel = None
            return "holding readings"
        if self._link.outages:
            return f"publishing {len(self._outbox)} held messages"
        return f"publishing to exchange {self._settings.exchange!r} with confirms"

    # ------------------------------------------------------------------ publishing

    def _pump(self) -> None:
        assert self._connection is not None and self._channel is not None
        while True:
            if self._finished():
                return
            entries = self._outbox.peek(_BATCH, timeout=0 if self._stop.is_set() else _IDLE_WAIT)
            for entry in entries:
                message = entry.expand()
                if message.run:  # ours, or a predecessor's replayed from the journal
                    self._own_runs.add(message.run)
                self._channel.basic_publish(
                    exchange=self._settings.exchange,
                    routing_key=message.routing_key,
                    body=message.body,
                    properties=properties_for(message, user_id=self._settings.username),
                )
                self._outbox.remove(entry)
                self.published += 1
                self._health.published(self._clock() - entry.taken_at)
            self._connection.process_data_events(time_limit=0)
            self._answer_resyncs()

    def _on_resync(
        self,
        channel: BlockingChannel,
        method: object,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        reply_to = properties.reply_to
        if not reply_to:
            _LOGGER.debug("ignoring a resync request without reply_to")
            return
        self._resync_gate.request(reply_to, properties.correlation_id)

    def _on_status(
        self,
        channel: BlockingChannel,
        method: object,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        """A poller status from the bus: is another poller polling our gateway?"""
        headers = properties.headers or {}
        din, run = headers.get(GATEWAY_HEADER), headers.get(RUN_HEADER)
        if not isinstance(din, str) or not isinstance(run, str) or run in self._own_runs:
            return  # a status this poller published (its own, or an earlier run's replayed)
        try:
            document = json.loads(body)
            made_at = _epoch_of(document["time"])
            started = document["payload"].get("started")
        except (ValueError, TypeError, KeyError, AttributeError):
            return  # not a status we can read: consumers will refuse it, so do we
        me = Me(PROCESS_RUN.run, self._health.started, self._health.din)
        verdict = judge(me, din, run, made_at, started)
        if verdict is Verdict.YIELD:
            raise ConfigError(
                "gateway",
                f"another poller (run {run}, started {started}) already polls gateway {din} "
                "on this bus; run one poller per gateway",
            )
        if verdict is Verdict.ELDER and run not in self._rivals_seen:
            self._rivals_seen.add(run)
            _LOGGER.warning(
                "another poller (run %s, started %s) also polls gateway %s on this bus; "
                "it started after us and should stop",
                run,
                started,
                din,
            )

    def _answer_resyncs(self) -> None:
        """Send the answers that are due, on the replies channel (see the module's doc)."""
        assert self._connection is not None
        due = self._resync_gate.due()
        if not due:
            return
        latest = self._outbox.latest()
        for reply_to, correlation_id in due:
            try:
                if self._replies is None or not self._replies.is_open:
                    self._replies = self._connection.channel()
                for message in latest:
                    self._replies.basic_publish(
                        exchange="",
                        routing_key=reply_to,
                        body=message.body,
                        properties=properties_for(message, correlation_id, self._settings.username),
                    )
            except (pika.exceptions.ChannelClosed, pika.exceptions.ChannelWrongStateError) as exc:
                self._replies = None
                self._resync_gate.failed()
                _LOGGER.warning(
                    "the broker refused a resync answer to %r: %s", reply_to, describe_closed(exc)
                )
                continue
            self.resyncs += 1
            _LOGGER.debug("answered a resync to %s with %d messages", reply_to, len(latest))


def _epoch_of(text: str) -> float:
    """An envelope's ISO time as epoch seconds; ValueError when it is not one."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("time without a zone")
    return moment.timestamp()


def describe_closed(exc: BaseException) -> str:
    """One line for a channel the broker closed."""
    code = getattr(exc, "reply_code", None)
    text = " ".join(str(getattr(exc, "reply_text", exc)).split())
    return f"{code} {text}" if code else text
