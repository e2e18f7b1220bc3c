"""Whether a consumer takes a delivery, and if not, why: one verdict for the proxy and the writer.

Anyone with broker credentials can publish to the exchange, and a message's own claims (its
time, its numbers) are only as good as its sender. So before a consumer serves or stores a
delivery, :func:`judge` checks, cheapest first:

1. **Size**: at most ``max_bytes``, refused unread.
2. **Sender**: RabbitMQ verifies the ``user_id`` property against the user of the publishing
   connection (a message claiming another user is refused by the broker with a channel
   error), so it cannot be forged. Only messages whose ``user_id`` is the configured poller
   user (``amqp.poller_user``, by default the consumer's own broker user) are taken. A
   message **without** ``user_id`` says nothing about its sender and is refused, with one
   exception for Tesla-API compatibility: ``MeterStream`` without it is taken when
   ``amqp.anonymous_meter_stream`` is on (Tesla-API's own publisher sets no properties).
3. **JSON**: the body must parse, with no ``NaN``/``Infinity`` or out-of-range numbers
   (Python's parser accepts them; they are not JSON, and a consumer would serve invalid
   JSON or store garbage).
4. **Time**: the reading time must lie in a window around the receiver's clock: at most
   ``max_future`` seconds ahead (clock skew between hosts), at most ``max_past`` seconds
   behind (how long a reading may legitimately wait: the poller's buffer during a broker
   outage, and for the writer its queue while it is stopped). The window keeps wild times
   out of storage; it does not order readings, :mod:`~powerwall_bus.shared.ordering` does.

Pure: the clock is an argument, nothing is logged; the consumer counts and reports what a
:class:`Refusal` says.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from powerwall_bus.shared.contract import METER_STREAM
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.messages import (
    Envelope,
    MeterStream,
    NonFiniteNumber,
    iso_time,
    parse_envelope,
    parse_meter_stream,
)
from powerwall_bus.shared.ordering import Position, position_of
from powerwall_bus.shared.settings import AmqpSettings

__all__ = ["Accepted", "Policy", "Reason", "Refusal", "judge"]


class _Limits(Protocol):
    """The settings of a consumer section the policy reads (proxy, writer)."""

    @property
    def max_message_bytes(self) -> int: ...
    @property
    def max_future(self) -> float: ...
    @property
    def max_past(self) -> float: ...


class Reason(enum.Enum):
    """Why a delivery was refused; the value is the key consumers count it under."""

    OVERSIZED = "oversized"
    FORGED = "forged"  # user_id of a broker user other than the poller's
    NO_USER_ID = "no_user_id"
    NON_FINITE = "non_finite"
    MALFORMED = "malformed"
    FUTURE = "future"
    PAST = "past"


@dataclass(frozen=True)
class Policy:
    """What a consumer accepts; ``section`` names its settings in refusal details."""

    poller_user: str
    max_bytes: int
    max_future: float
    max_past: float
    anonymous_meter_stream: bool = False
    section: str = ""

    @classmethod
    def for_consumer(cls, amqp: AmqpSettings, limits: _Limits, section: str) -> Policy:
        """The policy of a consumer whose settings section ``section`` holds ``limits``."""
        return cls(
            poller_user=amqp.trusted_publisher,
            max_bytes=limits.max_message_bytes,
            max_future=limits.max_future,
            max_past=limits.max_past,
            anonymous_meter_stream=amqp.anonymous_meter_stream,
            section=section,
        )

    def _setting(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name


@dataclass(frozen=True)
class Refusal:
    """A refused delivery: the reason and one line saying what was wrong."""

    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


@dataclass(frozen=True)
class Accepted:
    """A delivery fit to use: the parsed message, its reading time and its position."""

    message: Envelope | MeterStream
    time: float  # epoch seconds
    position: Position | None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _sender(policy: Policy, kind: str, user_id: Any) -> Refusal | None:
    user = _text(user_id)
    if not user:
        if kind == METER_STREAM and policy.anonymous_meter_stream:
            return None
        return Refusal(
            Reason.NO_USER_ID,
            f"no user_id: only messages from broker user {policy.poller_user!r} are taken",
        )
    if user != policy.poller_user:
        return Refusal(
            Reason.FORGED,
            f"from broker user {user[:64]!r}, not the poller's ({policy.poller_user!r}; "
            f"{policy._setting('poller_user')})",
        )
    return None


def _window(policy: Policy, epoch: float, now: float) -> Refusal | None:
    ahead = epoch - now
    if ahead > policy.max_future:
        return Refusal(
            Reason.FUTURE,
            f"dated {_when(epoch)}, {ahead:.0f} s ahead of this host's clock (at most "
            f"{policy.max_future:g} s: {policy._setting('max_future')})",
        )
    if -ahead > policy.max_past:
        return Refusal(
            Reason.PAST,
            f"dated {_when(epoch)}, {-ahead:.0f} s before this host's clock (at most "
            f"{policy.max_past:g} s: {policy._setting('max_past')})",
        )
    return None


def _when(epoch: float) -> str:
    try:
        return iso_time(epoch)
    except (OverflowError, ValueError, OSError):
        return f"epoch {epoch:.0f}"


def _parse(kind: str, body: bytes) -> Envelope | MeterStream | Refusal:
    try:
        return parse_meter_stream(body) if kind == METER_STREAM else parse_envelope(body)
    except NonFiniteNumber as exc:
        return Refusal(Reason.NON_FINITE, str(exc))
    except MalformedMessage as exc:
        return Refusal(Reason.MALFORMED, str(exc))
    except RecursionError:  # JSON nested deeper than Python parses
        return Refusal(Reason.MALFORMED, "body is nested too deeply to read")


def judge(
    policy: Policy,
    kind: str,
    body: bytes,
    *,
    user_id: Any,
    headers: Mapping[str, Any] | None,
    now: float,
) -> Accepted | Refusal:
    """The verdict on one delivery of ``kind`` (``properties.type``, else the routing key's
    kind) from the broker user ``user_id`` (``properties.user_id``), received at ``now``
    (epoch seconds, the consumer's clock)."""
    if len(body) > policy.max_bytes:
        return Refusal(
            Reason.OVERSIZED,
            f"body of {len(body)} bytes exceeds max_message_bytes ({policy.max_bytes}); not read",
        )
    refused = _sender(policy, kind, user_id)
    if refused is not None:
        return refused
    message = _parse(kind, body)
    if isinstance(message, Refusal):
        return message
    if isinstance(message, MeterStream):
        epoch, position = message.timestamp, position_of(headers)
    else:
        epoch, position = message.epoch, position_of(headers, message.run, message.seq)
    refused = _window(policy, epoch, now)
    if refused is not None:
        return refused
    return Accepted(message, epoch, position)
