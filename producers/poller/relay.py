"""The poller's control relay: signed Max Backup commands from the bus to the gateway.

The poller is the only process that talks to the gateway, so a dispatcher acting over the
LAN sends its signed TEDAPI message here (``control.<DIN>.tedapi``, see
:mod:`powerwall_bus.shared.control`). Nothing else on the bus can make the poller write
to the gateway: this relay takes only that kind, only for its own gateway, and only a
body that :func:`~powerwall_bus.shared.tedapi.responder.inspect_request` finds to be a
signed Max Backup call (list, schedule, cancel), or that
:func:`~powerwall_bus.shared.tedapi.responder.inspect_client_request` finds to be a signed
paired-keys call (list, add a key by trusted signature, remove: what ``pwbus pair add-lan``
sends), whose signature by the key it names is valid and not expired. Whether that key is
paired, the gateway decides.

Two threads share the work, each with what it owns:

* the **relay thread** (this module's :class:`ControlRelay`) owns a broker connection of
  its own: it consumes the control queue, judges each command at once (a refusal, a 429
  cool-down included, is answered at once, never queued), hands an accepted one to the
  reader through the :class:`Inbox`, and sends the answers the reader leaves behind;
* the **reader thread** posts the command between two reads (:func:`execute`), so no two
  gateway requests are ever in flight, and the 429 cool-down it keeps applies to commands
  too. ``/tedapi/v1r`` needs no login, so the hourly login cap never holds a command back.

The control queue is exclusive and auto-deleted, bounded and without dead-lettering: a
command is worth something for the 12 s its signature lasts, so none should wait for a
poller that is not running. While no poller runs the key is bound nowhere and the broker
returns a ``mandatory`` command to its sender at once (``consumers/dispatch/lan.py``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pika
import pika.exceptions
from google.protobuf.message import DecodeError
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.shared import control
from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.contract import CONTROL_TEDAPI, CONTROL_TEDAPI_REPLY
from powerwall_bus.shared.control import Reason, Refusal
from powerwall_bus.shared.errors import (
    BrokerRefused,
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
    MalformedMessage,
    RateLimited,
    TedapiFault,
)
from powerwall_bus.shared.gateway.client import GatewayClient
from powerwall_bus.shared.messages import CONTENT_TYPE
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.tedapi import responder
from powerwall_bus.shared.tedapi.clients import ClientKind
from powerwall_bus.shared.tedapi.commands import Kind
from powerwall_bus.shared.throttle import Throttle
from powerwall_bus.shared.topology import declare_exchange

_LOGGER = logging.getLogger(__name__)

#: Commands that may wait for the reader; more are refused ``busy`` (a dispatcher sends
#: one at a time, so a full inbox means someone floods the bus).
INBOX_SIZE = 4
#: The control queue's bound, like the resync queue's.
CONTROL_QUEUE_LENGTH = 100
CONTROL_QUEUE_PREFIX = "pwbus.poller."
_TICK = 0.1
APP_ID = "pwbus-poller"

#: What each fault of :func:`responder.inspect_request` is, as a refusal.
_FAULT_REASONS = {
    responder.FAULT_DECODING: Reason.NOT_SIGNED,
    responder.FAULT_INVALID_DOMAINS: Reason.NOT_MAX_BACKUP,
    responder.FAULT_UNKNOWN_KEY_ID: Reason.NOT_SIGNED,
    responder.FAULT_INVALID_SIGNATURE: Reason.NOT_SIGNED,
    responder.FAULT_WRONG_PERSONALIZATION: Reason.WRONG_GATEWAY,
    responder.FAULT_TIME_EXPIRED: Reason.EXPIRED,
}


@dataclass(frozen=True)
class Pending:
    """An accepted command waiting for the reader, and where its answer goes."""

    request: bytes
    call: Call
    reply_to: str
    correlation_id: str | None


@dataclass(frozen=True)
class Answer:
    """A reply body for ``reply_to``."""

    reply_to: str
    correlation_id: str | None
    body: bytes
    relayed: bool = False  # the gateway answered (whatever it said)


#: What a relayed command may ask: a Max Backup call or a paired-keys call.
Call = Kind | ClientKind

#: The calls that read and change nothing: relayed again when repeated (see Replays).
READ_ONLY: frozenset[Call] = frozenset({Kind.LIST, ClientKind.LIST})


def judge(request: bytes, own_din: str, now: float) -> Call | Refusal:
    """The call ``request`` carries, or why it must not reach the gateway (pure).

    The relay's check, not the gateway's: the signature must be valid for the key the
    message names (pairing is the gateway's business), for this gateway, unexpired, and the
    call a Max Backup or a paired-keys one.
    """
    try:
        return responder.inspect_request(request, own_din, now).kind
    except TedapiFault as fault:
        reason = _FAULT_REASONS.get(fault.fault, Reason.NOT_SIGNED)
        if fault.fault == responder.FAULT_DECODING and _signed_but_other(request, own_din, now):
            try:
                return responder.inspect_client_request(request, own_din, now).kind
            except TedapiFault:
                reason = Reason.NOT_MAX_BACKUP
        return Refusal(reason, f"{fault.name} (fault {fault.fault})")


def _signed_but_other(request: bytes, own_din: str, now: float) -> bool:
    """True when ``request`` is validly signed but asks something other than Max Backup."""
    message = responder.schema.RoutableMessage()
    try:
        message.ParseFromString(request)
        signer = bytes(message.signature_data.signer_identity.public_key)
        responder.verify_signed(request, own_din, {signer}, now)
    except (TedapiFault, responder.NotVerified, DecodeError):
        return False
    return True


class Inbox:
    """Accepted commands on their way to the reader, and the answers on their way back."""

    def __init__(self, size: int = INBOX_SIZE) -> None:
        self._size = size
        self._commands: collections.deque[Pending] = collections.deque()
        self._answers: collections.deque[Answer] = collections.deque()
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        #: Wakes the relay thread's broker loop when an answer is left (set by the relay).
        self.notify: Callable[[], None] | None = None

    def offer(self, pending: Pending) -> bool:
        """Queue a command for the reader; False when the inbox is full."""
        with self._lock:
            if len(self._commands) >= self._size:
                return False
            self._commands.append(pending)
        self._arrived.set()
        return True

    def take(self) -> Pending | None:
        """The oldest waiting command (reader thread)."""
        with self._lock:
            if not self._commands:
                self._arrived.clear()
                return None
            return self._commands.popleft()

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s, less when a command arrives (reader thread)."""
        self._arrived.wait(timeout)

    def wake(self) -> None:
        """End the reader's wait (shutdown)."""
        self._arrived.set()

    def answer(self, answer: Answer) -> None:
        """Leave a reply for the relay thread to send (and wake it: no tick to wait for)."""
        with self._lock:
            self._answers.append(answer)
            notify = self.notify
        if notify is not None:
            notify()

    def answers(self) -> list[Answer]:
        """The replies to send now (relay thread)."""
        with self._lock:
            ready = list(self._answers)
            self._answers.clear()
        return ready

    def drain(self) -> list[Pending]:
        """Every command still waiting (shutdown: each is answered ``stopping``)."""
        with self._lock:
            waiting = list(self._commands)
            self._commands.clear()
        return waiting


@dataclass(frozen=True)
class Executed:
    """What posting one command gave: the reply body, and the gateway error if any."""

    body: bytes
    error: GatewayError | None = None
    refusal: Refusal | None = None  # why it was not sent or not answered

    @property
    def relayed(self) -> bool:
        """The gateway answered."""
        return self.refusal is None


def _gateway_refusal(exc: GatewayError) -> Refusal:
    if isinstance(exc, RateLimited):
        return Refusal(Reason.COOLDOWN, str(exc), exc.cooldown_until)
    if isinstance(exc, GatewayTimeout):
        return Refusal(Reason.TIMEOUT, str(exc))
    if isinstance(exc, GatewayUnreachable):
        return Refusal(Reason.UNREACHABLE, str(exc))
    if isinstance(exc, GatewayHTTPError):
        retry_at = None if exc.retry_after is None else time.time() + exc.retry_after
        return Refusal(Reason.GATEWAY_ERROR, str(exc), retry_at)
    return Refusal(Reason.GATEWAY_ERROR, str(exc))


def execute(
    client: GatewayClient, pending: Pending, own_din: str, clock: Callable[[], float] = time.time
) -> Executed:
    """Post one accepted command (reader thread, between two reads) and build its reply.

    It is judged once more first: it may have waited for a read to finish, and a command
    whose signature expired meanwhile must not be sent.
    """
    now = clock()
    verdict = judge(pending.request, own_din, now)
    if isinstance(verdict, Refusal):
        return Executed(control.reply_body(own_din, now, refusal=verdict), refusal=verdict)
    try:
        answer = client.post_tedapi(pending.request)
    except GatewayError as exc:
        refusal = _gateway_refusal(exc)
        body = control.reply_body(own_din, clock(), call=verdict.value, refusal=refusal)
        return Executed(body, exc, refusal)
    return Executed(control.reply_body(own_din, clock(), call=verdict.value, response=answer))


def _expiry(request: bytes) -> float:
    message = responder.schema.RoutableMessage()
    message.ParseFromString(request)
    return float(message.signature_data.rsa_data.expires_at)


def signature_of(request: bytes) -> bytes:
    """The RSA signature of a request :func:`judge` accepted (what makes it unique: the same
    envelope and expiry always sign the same, and nobody else can make another)."""
    message = responder.schema.RoutableMessage()
    message.ParseFromString(request)
    return bytes(message.signature_data.rsa_data.signature)


class Replays:
    """Signatures relayed and not yet expired: a schedule or cancel goes to the gateway once.

    Anyone on the bus could otherwise send a command they saw again within its 12 s (the
    uuid is not signed, so it is no help): a cancel replayed after a new schedule would end
    the hold. A list is a read and may repeat (two in the same second sign the same bytes).
    Bounded: expired signatures are dropped.
    """

    def __init__(self, limit: int = 1000) -> None:
        self._seen: dict[bytes, float] = {}
        self._limit = limit

    def first(self, signature: bytes, expires_at: float, now: float) -> bool:
        """True the first time ``signature`` is offered (and remember it till it expires)."""
        if len(self._seen) >= self._limit or signature in self._seen:
            self._seen = {s: at for s, at in self._seen.items() if at >= now}
        if signature in self._seen:
            return False
        if len(self._seen) >= self._limit:
            return False  # a flood of valid signatures: refuse rather than forget
        self._seen[signature] = expires_at
        return True


class ControlRelay:
    """Consume this gateway's control queue; judge, hand over, answer (its own thread)."""

    def __init__(
        self,
        settings: AmqpSettings,
        client: GatewayClient,
        inbox: Inbox,
        stop: threading.Event,
        *,
        clock: Callable[[], float] = time.time,
        backoff_max: float = 30.0,
    ) -> None:
        self._settings = settings
        self._client = client
        self._inbox = inbox
        self._stop = stop
        self._clock = clock
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._din = ""
        self._refusals = Throttle(60.0)
        self._replays = Replays()
        self._link = BrokerLink(
            settings,
            "pwbus-poller-control",
            stop,
            backoff=Backoff(first=1.0, cap=backoff_max, jitter=0.5),
            on_state=self._state,
            logger=_LOGGER,
        )
        self.counts = {"relayed": 0, "refused": 0}
        self.bound = threading.Event()  # the control queue is bound (tests wait for it)

    def run(self) -> None:
        """Wait for the gateway's DIN (the key names it), then serve until stopped."""
        while not self._stop.is_set() and not self._client.din:
            self._stop.wait(0.5)
        if self._stop.is_set():
            return
        self._din = str(self._client.din)
        try:
            self._link.run(self._open, self._serve)
        except BrokerRefused as exc:
            # The readings need not suffer for it (a broker user without the control key's
            # topic read, say): one line, no relay, the poller goes on.
            _LOGGER.error("signed commands are not relayed: %s", exc)
            self._stop.wait()
        finally:
            self._inbox.notify = None
            self._connection = self._channel = None
            self.bound.clear()
        _LOGGER.info(
            "control relay stopped: %d commands relayed, %d refused",
            self.counts["relayed"],
            self.counts["refused"],
        )

    def _state(self, up: bool) -> str | None:
        if not up:
            self._inbox.notify = None
            self._connection = self._channel = None
            self.bound.clear()
            return None
        return f"taking signed Max Backup commands under {control.command_key(self._din)}"

    def _open(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        queue = f"{CONTROL_QUEUE_PREFIX}{uuid.uuid4().hex[:12]}.control"
        channel.queue_declare(
            queue=queue,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": CONTROL_QUEUE_LENGTH, "x-overflow": "reject-publish"},
        )
        channel.queue_bind(
            queue=queue,
            exchange=self._settings.exchange,
            routing_key=control.command_key(self._din),
        )
        channel.basic_consume(queue=queue, on_message_callback=self._on_command, auto_ack=True)
        self._connection, self._channel = connection, channel
        self._inbox.notify = self._wake
        self.bound.set()

    def _wake(self) -> None:
        """From the reader thread: send the answers now (pika's one thread-safe call)."""
        connection = self._connection
        if connection is None:
            return
        # A connection on its way out: the answer goes out after reconnecting.
        with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
            connection.add_callback_threadsafe(self._send_answers)

    def _serve(self) -> None:
        assert self._connection is not None
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=_TICK)
            self._send_answers()
        self._send_answers()
        for pending in self._inbox.drain():
            refusal = Refusal(Reason.STOPPING, "the poller is shutting down")
            self._reply(pending.reply_to, pending.correlation_id, refusal=refusal)

    def _send_answers(self) -> None:
        for answer in self._inbox.answers():
            self.counts["relayed" if answer.relayed else "refused"] += 1
            self._publish(answer.reply_to, answer.correlation_id, answer.body)

    # ------------------------------------------------------------------ commands

    def _on_command(
        self,
        channel: BlockingChannel,
        method: object,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        reply_to = properties.reply_to
        if not reply_to:
            self._refused(Reason.MALFORMED, "a command without reply_to (dropped, no answer)")
            return
        correlation_id = properties.correlation_id
        if properties.type not in (None, CONTROL_TEDAPI):
            refusal = Refusal(Reason.MALFORMED, f"type {properties.type!r} is not {CONTROL_TEDAPI}")
            self._reply(reply_to, correlation_id, refusal=refusal)
            return
        try:
            command = control.parse_command(body)
        except MalformedMessage as exc:
            self._reply(reply_to, correlation_id, refusal=Refusal(Reason.MALFORMED, str(exc)))
            return
        if command.gateway != self._din:
            detail = (
                f"the command is for gateway {command.gateway[:80]}, this poller reads {self._din}"
            )
            self._reply(reply_to, correlation_id, refusal=Refusal(Reason.WRONG_GATEWAY, detail))
            return
        verdict = judge(command.request, self._din, self._clock())
        if isinstance(verdict, Refusal):
            self._reply(reply_to, correlation_id, refusal=verdict)
            return
        now = self._clock()
        signature, expires_at = signature_of(command.request), _expiry(command.request)
        if verdict not in READ_ONLY and not self._replays.first(signature, expires_at, now):
            refusal = Refusal(Reason.REPLAYED, "this signed command was relayed already")
            self._reply(reply_to, correlation_id, call=verdict.value, refusal=refusal)
            return
        remaining = self._client.cooldown_remaining
        if remaining > 0:  # answered now: the command would be stale by the cool-down's end
            until = self._clock() + remaining
            refusal = Refusal(
                Reason.COOLDOWN, f"gateway rate-limit cool-down has {remaining:.0f} s left", until
            )
            self._reply(reply_to, correlation_id, call=verdict.value, refusal=refusal)
            return
        if not self._inbox.offer(Pending(command.request, verdict, reply_to, correlation_id)):
            refusal = Refusal(Reason.BUSY, f"{INBOX_SIZE} commands already wait for the gateway")
            self._reply(reply_to, correlation_id, call=verdict.value, refusal=refusal)

    def _reply(
        self,
        reply_to: str,
        correlation_id: str | None,
        *,
        refusal: Refusal,
        call: str | None = None,
    ) -> None:
        self._refused(refusal.reason, refusal.detail)
        body = control.reply_body(self._din, self._clock(), call=call, refusal=refusal)
        self._publish(reply_to, correlation_id, body)

    def _refused(self, reason: Reason, detail: str) -> None:
        self.counts["refused"] += 1
        swallowed = self._refusals.allow(reason)
        if swallowed is not None:
            _LOGGER.warning(
                "refused a control command: %s, %s%s",
                reason.value,
                detail,
                Throttle.suffix(swallowed),
            )

    def _publish(self, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        """Send one reply through the default exchange; a ``reply_to`` the broker refuses
        costs that reply only (the channel is opened again)."""
        assert self._connection is not None
        try:
            if self._channel is None or not self._channel.is_open:
                raise pika.exceptions.ChannelWrongStateError("channel closed")
            self._channel.basic_publish(
                exchange="",
                routing_key=reply_to,
                body=body,
                properties=pika.BasicProperties(
                    user_id=self._settings.username,
                    content_type=CONTENT_TYPE,
                    delivery_mode=pika.DeliveryMode.Transient,
                    app_id=APP_ID,
                    type=CONTROL_TEDAPI_REPLY,
                    correlation_id=correlation_id,
                    timestamp=int(self._clock()),
                ),
            )
        except (pika.exceptions.ChannelClosed, pika.exceptions.ChannelWrongStateError) as exc:
            _LOGGER.warning("could not answer a control command on %r: %s", reply_to, exc)
            raise  # the queue's consumer went with the channel: BrokerLink reconnects
