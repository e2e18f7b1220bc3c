"""The MySQL writer: a durable queue in, batched transactions out, acknowledged after commit.

Topology: a durable queue bound to every gateway's stored kinds, with a dead-letter queue
(:mod:`~powerwall_bus.consumers.mysql.queues`, declared on every connect). Every gateway is
stored, each under the DIN its envelopes carry.

Readings wait in the queue while the writer is stopped; nothing is lost across restarts.

Batching and acknowledgement. One thread owns the pika connection and the database
connection (a worker thread runs the transactions, below). Deliveries (at most
``prefetch`` unacknowledged) collect in memory; a batch is written when ``batch_size``
messages are there or the oldest has waited ``batch_wait`` seconds. A batch is checked
message by message (size, JSON Schema, envelope, rows), its rows go to the database in
**one transaction**, and only after the commit is the batch
acknowledged with a single ``basic_ack(multiple=True)``.

Two batches overlap: while one batch's transaction runs (on a worker thread, most of its
time spent waiting for the server to insert the rows and recompute the summaries), the
main thread keeps serving the broker and checks the next batch. The main thread still does
everything else: it acknowledges a batch only after its commit, one batch at a time and in
queue order, and it never touches the database while a write is in flight; a batch the
database refused or could not take is handled as below with nothing else in flight.

Every table's primary key plus ``INSERT IGNORE`` makes a redelivered message a no-op, so
the at-least-once delivery of the broker never stores a reading twice.

Messages that must not be stored are **dead-lettered**: the ones
:func:`~powerwall_bus.shared.acceptance.judge` refuses (a body over ``max_message_bytes``,
never parsed; not from the poller's broker user, ``amqp.poller_user``; non-finite numbers;
dated more than ``writer.max_future`` ahead of or ``writer.max_past`` behind this host's
clock, so a poller's wild clock neither stores rows dated 1900 or 2099 nor poisons the grid
status tracker), schema-invalid ones (:mod:`~powerwall_bus.consumers.mysql.checks`, by
``properties.type`` or the routing key) and rows the database refuses. The writer publishes
the original body and properties to the dead-letter queue (with publisher confirms) adding
the headers ``x-pwbus-reason`` (one line), ``x-pwbus-routing-key``, ``x-pwbus-exchange`` and
``x-pwbus-dead-lettered-at`` (epoch s), then acknowledges it with its batch; the valid
messages around it are written as usual. The original ``user_id`` goes into the header
``x-pwbus-user-id`` (the property itself cannot be kept: the broker accepts only the
writer's own user there). Dead letters are logged at most once a minute per reason. If the
database refuses a whole batch (a value it will not store), the batch is written again
message by message so only the offending messages are dead-lettered.

Database down: the batch is **not acknowledged**; the writer logs once, keeps the broker
connection alive (heartbeats) while it waits with a capped exponential back-off
(1 s doubling to ``writer.retry_max``), and writes the same batch when the database is
back, logging the recovery. Broker down, hung or dropping us: the writer drops what it
holds (the broker redelivers every unacknowledged message) and reconnects with a capped,
jittered back-off (:class:`~powerwall_bus.shared.amqp.BrokerLink`). A broker that refuses
our login, virtual host or permissions is a configuration error: :meth:`Writer.run` raises
it and ``pwbus mysql`` exits 2.
Note RabbitMQ's ``consumer_timeout`` (30 min by default): a database outage longer than
that makes the broker close the channel; the writer reconnects and holds the redelivered
messages again.

Grid status is stored only on change, which needs the previous status per gateway: a
:class:`~consumers.mysql.rows.GridStatusTracker` seeded from ``grid_status_changes`` on
every database connect; a batch works on a copy that replaces the tracker only after the
commit, so a batch written twice yields the same rows. (Run one writer per database: two
writers on one queue would each track grid status on their own.)

Summaries and retention: each batch's transaction also recomputes the summary buckets it
touched (:mod:`~consumers.mysql.summaries`), and with ``writer.retention`` a thread of its
own (:class:`~consumers.mysql.retention.RetentionKeeper`, its own connection) creates daily
partitions ahead and drops raw days past ``writer.raw_retention_days`` /
``writer.vitals_retention_days`` once a UTC day, never holding up a batch for long. While it
runs, the writer holds the migration lock, so `pwbus db migrate` refuses to copy tables
under it.

Stopping (``stop()``, SIGTERM in ``pwbus mysql``): the batch in memory is written once
more if the database answers, otherwise abandoned unacknowledged; the connections are
closed and :meth:`Writer.run` returns.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.consumers.mysql.checks import MessageCheck
from powerwall_bus.consumers.mysql.command import WriterConfig
from powerwall_bus.consumers.mysql.connection import connect
from powerwall_bus.consumers.mysql.db import Database
from powerwall_bus.consumers.mysql.queues import (
    DEAD_AT_HEADER,
    EXCHANGE_HEADER,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
    bindings,
    declare_topology,
    one_line,
)
from powerwall_bus.consumers.mysql.retention import RetentionKeeper
from powerwall_bus.consumers.mysql.rows import (
    STORED_KINDS,
    GridStatusTracker,
    Rows,
    rows_for_envelope,
    rows_for_meter_stream,
)
from powerwall_bus.shared.acceptance import Accepted, Policy, Reason, Refusal, judge
from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    MalformedMessage,
)
from powerwall_bus.shared.messages import Envelope, MeterStream, kind_of
from powerwall_bus.shared.refusals import RefusalLog
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.throttle import Reminder
from powerwall_bus.shared.topology import METER_STREAM

_LOGGER = logging.getLogger(__name__)

_MAX_PREFETCH = 65535  # basic.qos prefetch-count is an unsigned short
_IDLE_TICK = 0.25  # longest single wait in the pika loop (signal and stop latency)
_SWITCH_INTERVAL = 0.0005  # seconds between GIL hand-overs while the writer runs (5 ms default)
#: Dead-letter header: the ``user_id`` the message was published with, when it had one.
USER_ID_HEADER = "x-pwbus-user-id"


# --------------------------------------------------------------------------- deliveries


@dataclass
class Delivery:
    """One unacknowledged message."""

    tag: int
    exchange: str
    routing_key: str
    properties: pika.BasicProperties
    body: bytes
    arrived: float  # time.monotonic()


@dataclass
class Outcome:
    """What to do with one delivery: store rows, dead-letter it, or just acknowledge."""

    delivery: Delivery
    rows: Rows | None = None
    reason: str | None = None  # set: dead-letter with this reason
    category: str = "invalid"  # what the reason is about, for the rate-limited log


@dataclass
class WriterStats:
    """Counters since start (read by tests and the shutdown log line)."""

    received: int = 0
    written: int = 0  # messages whose rows were committed (or that had none to store)
    rows: int = 0  # rows actually inserted (not ignored as duplicates)
    dead_lettered: int = 0
    ignored: int = 0  # kinds the writer does not store
    batches: int = 0
    database_outages: int = 0
    broker_outages: int = 0
    reasons: list[str] = field(default_factory=list)  # the last few dead-letter reasons


class _Abandon(Exception):
    """Stop was requested while the batch could not be written."""


@dataclass
class _Job:
    """One batch: its deliveries, their outcomes and the grid tracker after it."""

    batch: list[Delivery]
    outcomes: list[Outcome]
    trial: GridStatusTracker

    def rows(self) -> Rows:
        """Every row of the batch, for one transaction."""
        rows = Rows()
        for item in self.outcomes:
            if item.rows is not None:
                rows.extend(item.rows)
        return rows


@dataclass
class _Writing:
    """The batch whose transaction runs on the worker thread."""

    job: _Job
    future: Future[int]  # the number of rows inserted


# --------------------------------------------------------------------------- the writer


class Writer:
    """Consume, batch, write, acknowledge; until :meth:`stop`."""

    def __init__(
        self,
        config: WriterConfig,
        *,
        check: MessageCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings = config.writer
        self.db = Database(config.mysql)
        self.check = check or MessageCheck()
        self.stats = WriterStats()
        self.tracker = GridStatusTracker()
        self.policy = Policy.for_consumer(config.amqp, config.writer, "writer")
        self.refusals = RefusalLog(_LOGGER)  # dead letters by category, logged rate-limited
        self._clock = clock
        self._wall_clock = wall_clock
        self._stop = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._consumer_tag: str | None = None
        self._pending: list[Delivery] = []
        self._writing: _Writing | None = None  # always the first batch of _pending
        self._worker: ThreadPoolExecutor | None = None
        self._migrated = False
        self._database_ready = False
        self._ever_connected_database = False
        self._database_backoff = Backoff(first=1.0, cap=self.settings.retry_max, jitter=0.25)
        self._database_reminder = Reminder(clock=clock)
        self._database_down_since: float | None = None
        self._broker = BrokerLink(
            config.amqp,
            "pwbus-mysql",
            self._stop,
            backoff=Backoff(first=1.0, cap=30.0, jitter=0.5),
            on_state=self._broker_state,
            logger=_LOGGER,
        )
        self.ready = threading.Event()  # set once consuming (tests wait on it)

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask :meth:`run` to finish (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Write until stopped. Raises ConfigError (BrokerRefused: the broker refused our
        login or permissions) or DatabaseError when retrying is futile."""
        settings = self.settings
        if settings.prefetch > _MAX_PREFETCH:
            raise ConfigError("writer.prefetch", f"must be at most {_MAX_PREFETCH} (AMQP limit)")
        if settings.prefetch < settings.batch_size:
            _LOGGER.warning(
                "writer.prefetch (%d) is below writer.batch_size (%d): batches will not fill",
                settings.prefetch,
                settings.batch_size,
            )
        _LOGGER.info(
            "mysql writer starting: broker %s, database %s, queue %r (batches of %d, %g s)",
            self.config.amqp.safe_url,
            self.config.mysql.safe_url,
            settings.queue,
            settings.batch_size,
            settings.batch_wait,
        )
        keeper: RetentionKeeper | None = None
        switch_interval = sys.getswitchinterval()
        try:
            try:
                self._prepare_database()
            except DatabaseUnavailable as exc:
                self._database_unavailable(exc, held=0)
            if settings.retention:
                mysql = self.config.mysql
                keeper = RetentionKeeper(
                    lambda: connect(mysql, io_timeout=None),
                    settings.raw_retention_days,
                    settings.vitals_retention_days,
                )
                keeper.start()
            # The worker thread mostly waits for the server; when an answer arrives it
            # needs the GIL back from the busy main thread, which by default hands it over
            # only every 5 ms, several times per batch.
            sys.setswitchinterval(_SWITCH_INTERVAL)
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="pwbus-mysql-write")
            self._broker.run(self._open_broker, self._consume)
        finally:
            self._forget_writing()
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._worker = None
            sys.setswitchinterval(switch_interval)
            if keeper is not None:
                keeper.stop()
            self._connection = self._channel = None
            self.db.close()
            self.ready.clear()
            _LOGGER.info(
                "mysql writer stopped: %d messages written (%d rows), %d dead-lettered",
                self.stats.written,
                self.stats.rows,
                self.stats.dead_lettered,
            )

    # ------------------------------------------------------------------ database

    def _prepare_database(self) -> None:
        """Connect; migrate once per process (if configured); seed the grid tracker."""
        if self._database_ready and self.db.connected:
            return
        self._database_ready = False
        try:
            self.db.ensure_connected()
            if self.settings.migrate and not self._migrated:
                version = self.db.migrate()
                self._migrated = True
                _LOGGER.info("database schema at version %d", version)
            self.tracker = GridStatusTracker(self.db.grid_status_seed())
            if not self.db.hold_migration_lock():
                _LOGGER.warning(
                    "another session holds the migration lock (a second writer?): run one"
                    " writer per database"
                )
        except DatabaseError as exc:
            if not self._ever_connected_database:
                raise  # wrong settings: fail loudly at start
            self.db.close()
            raise DatabaseUnavailable(str(exc)) from None
        self._ever_connected_database = True
        self._database_ready = True

    def _database_unavailable(self, exc: DatabaseUnavailable, held: int) -> float:
        """Log the outage once; the delay before the next attempt."""
        first = self._database_backoff.failures == 0
        delay = self._database_backoff.next_delay()
        self._database_ready = False
        if first:
            self._database_down_since = self._clock()
            self._database_reminder.start()
            self.stats.database_outages += 1
            _LOGGER.warning(
                "%s; holding %d messages unacknowledged and retrying (at most every %g s)",
                exc,
                held,
                self.settings.retry_max,
            )
        elif self._database_reminder.due():
            _LOGGER.warning(
                "database still unavailable after %.0f s (%d attempts), holding %d messages: %s",
                self._clock() - (self._database_down_since or self._clock()),
                self._database_backoff.failures,
                held,
                exc,
            )
        else:
            _LOGGER.debug(
                "database still unavailable (attempt %d): %s", self._database_backoff.failures, exc
            )
        return delay

    def _database_back(self) -> None:
        if self._database_backoff.failures:
            down = self._clock() - (self._database_down_since or self._clock())
            _LOGGER.info(
                "database %s is back after %.0f s: the held messages are written",
                self.config.mysql.safe_url,
                down,
            )
        self._database_backoff.succeeded()
        self._database_down_since = None

    # ------------------------------------------------------------------ broker

    def _open_broker(self, connection: pika.BlockingConnection) -> None:
        """On every (re)connect: the topology, the prefetch, confirms, the consumer."""
        settings = self.settings
        self._forget_writing()
        self._pending.clear()  # delivery tags of an earlier channel mean nothing here
        channel = connection.channel()
        declare_topology(channel, self.config.amqp.exchange, settings)
        channel.basic_qos(prefetch_count=settings.prefetch)
        channel.confirm_delivery()  # for dead letters: acknowledged only once the broker has them
        self._consumer_tag = channel.basic_consume(
            settings.queue, on_message_callback=self._on_delivery
        )
        self._connection, self._channel = connection, channel

    def _broker_state(self, up: bool) -> str:
        """The broker link's state changes; the detail of its log line."""
        if up:
            self.ready.set()
            return (
                f"consuming {self.settings.queue!r} (exchange {self.config.amqp.exchange!r}: "
                f"{', '.join(bindings(self.settings))})"
            )
        self.ready.clear()
        self._forget_writing()
        held = len(self._pending)
        self._pending.clear()  # the broker redelivers whatever was not acknowledged
        self._connection = self._channel = None
        self.stats.broker_outages += 1
        return f"{held} unacknowledged messages will be redelivered"

    def _on_delivery(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        self.stats.received += 1
        self._pending.append(
            Delivery(
                tag=method.delivery_tag,
                exchange=method.exchange,
                routing_key=method.routing_key,
                properties=properties,
                body=body,
                arrived=self._clock(),
            )
        )

    def _pump(self, seconds: float) -> None:
        """Serve the broker (heartbeats, deliveries) for up to ``seconds``."""
        assert self._connection is not None
        self._connection.process_data_events(time_limit=max(0.0, seconds))

    def _consume(self) -> None:
        while True:
            if self._stop.is_set():
                self._finish()
                return
            if self._writing is not None and self._writing.future.done():
                try:
                    self._settle()
                except _Abandon:
                    self._abandon()
                    return
                continue
            if self._due():
                try:
                    self._flush()
                except _Abandon:
                    self._abandon()
                    return
                continue
            self._pump(self._pump_time())

    def _waiting(self) -> list[Delivery]:
        """The deliveries not yet in a batch being written."""
        return self._pending[len(self._writing.job.batch) :] if self._writing else self._pending

    def _due(self) -> bool:
        """True once a batch is full or its oldest message has waited batch_wait."""
        waiting = self._waiting()
        if not waiting:
            return False
        due = waiting[0].arrived + self.settings.batch_wait
        return len(waiting) >= self.settings.batch_size or self._clock() >= due

    def _pump_time(self) -> float:
        """How long to serve the broker before looking at the batch again (the worker
        wakes the loop when a write ends)."""
        waiting = self._waiting()
        if not waiting:
            return _IDLE_TICK
        due = waiting[0].arrived + self.settings.batch_wait
        return max(0.0, min(_IDLE_TICK, due - self._clock()))

    def _finish(self) -> None:
        """On stop: one last attempt at what is held; anything unwritten stays unacked."""
        if self._channel is not None and self._consumer_tag is not None:
            # Deliveries not yet handed to us stay unacknowledged: the broker keeps them.
            self._channel.basic_cancel(self._consumer_tag)
        while self._pending:
            try:
                if self._writing is None:
                    self._flush()
                self._settle()
            except _Abandon:
                self._abandon()
                return

    def _abandon(self) -> None:
        self._forget_writing()
        _LOGGER.info(
            "stopping with %d messages unwritten: the broker will deliver them again",
            len(self._pending),
        )
        self._pending.clear()

    # ------------------------------------------------------------------ batches

    def outcome(self, delivery: Delivery, tracker: GridStatusTracker) -> Outcome:
        """Check and convert one delivery (no I/O): rows, a dead-letter reason, or nothing."""
        settings = self.settings
        key = delivery.properties.type or delivery.routing_key
        if len(delivery.body) <= settings.max_message_bytes:  # else dead-lettered unread
            if key == METER_STREAM and not settings.meter_stream:
                return Outcome(delivery)  # a binding left from an earlier run: not stored
            if key != METER_STREAM and kind_of(key) not in STORED_KINDS:
                return Outcome(delivery)  # e.g. api.status sent straight to the queue
        judged = judge(
            self.policy,
            key,
            delivery.body,
            user_id=delivery.properties.user_id,
            headers=delivery.properties.headers,
            now=self._wall_clock(),
        )
        if isinstance(judged, Refusal) and judged.reason is not Reason.MALFORMED:
            return Outcome(delivery, reason=one_line(judged.detail), category=judged.reason.value)
        try:
            parsed = judged.message if isinstance(judged, Accepted) else None
            document = parsed.document if isinstance(parsed, Envelope) else None
            problems = self.check.problems(key, delivery.body, document)
        except RecursionError:  # JSON nested deeper than Python parses
            return Outcome(delivery, reason="body is nested too deeply to read")
        if problems:  # the schema says best what is wrong with a malformed message
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return Outcome(delivery, reason=one_line(f"schema: {problems[0]}{more}"))
        if isinstance(judged, Refusal):
            return Outcome(delivery, reason=one_line(judged.detail))
        try:
            message = judged.message
            if isinstance(message, MeterStream):
                rows = rows_for_meter_stream(message, settings.meter_stream_gateway)
            else:
                rows = rows_for_envelope(message, tracker)
        except MalformedMessage as exc:
            return Outcome(delivery, reason=one_line(str(exc)))
        except Exception as exc:  # a bug must not turn one message into a crash loop
            _LOGGER.exception("converting a message from %s failed", delivery.routing_key)
            return Outcome(delivery, reason=one_line(f"cannot convert: {type(exc).__name__}"))
        return Outcome(delivery, rows=rows)

    def _job(self, batch: list[Delivery], base: GridStatusTracker) -> _Job:
        trial = base.copy()
        return _Job(batch, [self.outcome(delivery, trial) for delivery in batch], trial)

    def _flush(self) -> None:
        """Check the next batch and start writing it on the worker thread.

        It is checked while the batch before it is still being written (with the grid
        tracker that batch leaves), then that write is settled (acknowledged, or handled
        when the database refused it or went away) before this one starts.
        """
        waiting = self._waiting()
        batch = waiting[: self.settings.batch_size]
        base = self._writing.job.trial if self._writing is not None else self.tracker
        job = self._job(batch, base)
        if self._writing is not None:
            self._settle()
        if base is not self.tracker:  # the batch before ended another way: check again
            job = self._job(batch, self.tracker)
        if not (self._database_ready and self.db.connected) or self._worker is None:
            self._acknowledge(*self._write_now(batch))
            return
        future = self._worker.submit(self._write_in_worker, job.rows())
        self._writing = _Writing(job, future)

    def _write_in_worker(self, rows: Rows) -> int:
        """The worker thread's part: one transaction; then wake the pika loop."""
        try:
            return self.db.write(rows)
        finally:
            connection = self._connection
            if connection is not None:
                # else the loop may sleep up to _IDLE_TICK; closed meanwhile: nothing to wake
                with contextlib.suppress(Exception):
                    connection.add_callback_threadsafe(lambda: None)

    def _settle(self) -> None:
        """Wait for the write in flight (serving the broker meanwhile) and acknowledge its
        batch; a batch the database refused is written message by message, one it could not
        take is held and retried."""
        writing, self._writing = self._writing, None
        if writing is None:
            return
        job = writing.job
        while not writing.future.done():  # a slow transaction: keep heartbeats going
            self._pump(_IDLE_TICK)
        try:
            inserted = writing.future.result()
        except DatabaseUnavailable as exc:
            job, inserted = self._write_now(job.batch, failed=exc)
        except DatabaseError as exc:
            job, inserted = self._one_by_one(job, exc)
        self._acknowledge(job, inserted)

    def _forget_writing(self) -> None:
        """Drop the write in flight without acknowledging it (the channel is gone or we
        are stopping): wait for its transaction to end, whatever its result; the broker
        delivers the batch again and ``INSERT IGNORE`` makes that a no-op."""
        writing, self._writing = self._writing, None
        if writing is not None:
            # its messages are redelivered; the next write reconnects if it must
            with contextlib.suppress(DatabaseError):
                writing.future.result()

    def _write_now(
        self, batch: list[Delivery], failed: DatabaseUnavailable | None = None
    ) -> tuple[_Job, int]:
        """Write ``batch`` on this thread; hold it (retrying) while the database is down
        (``failed``: the worker's attempt already found it down)."""
        while True:
            if failed is not None:
                delay = self._database_unavailable(failed, held=len(self._pending))
                if self._stop.is_set():
                    raise _Abandon() from None
                self._wait(delay)
                if self._stop.is_set():
                    raise _Abandon() from None
            try:
                self._prepare_database()
                job = self._job(batch, self.tracker)
                try:
                    return job, self.db.write(job.rows())
                except DatabaseError as exc:
                    return self._one_by_one(job, exc)
            except DatabaseUnavailable as exc:
                failed = exc

    def _wait(self, seconds: float) -> None:
        """Wait while keeping the broker connection served; returns early on stop."""
        deadline = self._clock() + seconds
        while not self._stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return
            self._pump(min(_IDLE_TICK, left))

    def _one_by_one(self, job: _Job, exc: DatabaseError) -> tuple[_Job, int]:
        """The database refused the batch: write each message alone, dead-letter refusals."""
        _LOGGER.warning("the database refused a batch (%s); writing it message by message", exc)
        trial = self.tracker.copy()
        outcomes = []
        inserted = 0
        for delivery in job.batch:
            item = self.outcome(delivery, trial)
            if item.rows is not None:
                try:
                    inserted += self.db.write(item.rows)
                except DatabaseError as refused:
                    reason = one_line(f"database refused: {refused}")
                    item = Outcome(delivery, reason=reason, category="database")
            outcomes.append(item)
        return _Job(job.batch, outcomes, trial), inserted

    def _acknowledge(self, job: _Job, inserted: int) -> None:
        """After the commit: adopt the tracker, dead-letter, ack the batch, count."""
        self.tracker = job.trial
        self._dead_letter([item for item in job.outcomes if item.reason is not None])
        assert self._channel is not None
        self._channel.basic_ack(delivery_tag=job.batch[-1].tag, multiple=True)
        del self._pending[: len(job.batch)]
        stored = sum(1 for item in job.outcomes if item.rows is not None)
        ignored = sum(1 for item in job.outcomes if item.rows is None and item.reason is None)
        self.stats.batches += 1
        self.stats.written += stored
        self.stats.rows += inserted
        self.stats.ignored += ignored
        self._database_back()
        _LOGGER.debug("batch of %d: %d stored, %d new rows", len(job.batch), stored, inserted)

    def _dead_letter(self, items: list[Outcome]) -> None:
        assert self._channel is not None
        for item in items:
            delivery = item.delivery
            original = delivery.properties
            headers = dict(original.headers or {})
            if original.user_id:
                headers[USER_ID_HEADER] = original.user_id
            headers.update(
                {
                    REASON_HEADER: item.reason,
                    ROUTING_KEY_HEADER: delivery.routing_key,
                    EXCHANGE_HEADER: delivery.exchange,
                    DEAD_AT_HEADER: int(time.time()),
                }
            )
            properties = pika.BasicProperties(
                content_type=original.content_type,
                content_encoding=original.content_encoding,
                headers=headers,
                delivery_mode=pika.DeliveryMode.Persistent,
                priority=original.priority,
                correlation_id=original.correlation_id,
                reply_to=original.reply_to,
                message_id=original.message_id,
                timestamp=original.timestamp,
                type=original.type,
                app_id=original.app_id,
            )
            self._channel.basic_publish(
                exchange="",
                routing_key=self.settings.dead_letter_queue,
                body=delivery.body,
                properties=properties,
                mandatory=True,
            )
            self.stats.dead_lettered += 1
            self.stats.reasons = [*self.stats.reasons[-19:], item.reason or ""]
            self.refusals.refused(
                item.category,
                f"dead-lettered (id {original.message_id}): {item.reason}",
                delivery.routing_key,
            )
