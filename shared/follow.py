"""Which gateway a consumer follows when several share the bus: one decision per message.

A consumer that shows one site (the proxy, a display) must never mix two gateways' numbers.
It is told which gateway to follow (``PWBUS_GATEWAY`` / ``--gateway``: a DIN or the poller's
name for it) or, left unset, follows the only gateway on the bus. :class:`GatewayFollower`
makes that decision for every delivery from the sender's identity, which the poller puts in
the AMQP headers (``x-pwbus-gateway``, ``x-pwbus-gateway-name``; see
:func:`sender_of`). It is pure: no I/O, no clock, no logging; the consumer logs and reports
what :meth:`GatewayFollower.accept` returns.

The rules:

* **Wanted gateway set**: a message is taken when its DIN or its name equals the wanted
  value, or when it matches the gateway those messages showed (a message carrying only the
  DIN of a gateway first seen by its name, or the reverse).
* **Unset**: the first gateway with an identity is locked onto; messages of any other are
  refused, and each other gateway is recorded once, which the consumer reports
  (:meth:`GatewayFollower.problem`: "set PWBUS_GATEWAY").
* **Same gateway**: two identities are one gateway when their DINs are equal; when either
  DIN is missing (``unknown``: the poller has not read ``/api/status`` yet), when their
  names are equal.
* **No identity** (a Tesla-API publisher's ``MeterStream`` has no headers and no body field
  for it; a poller that has not learned its DIN and has no name): the message is taken only
  while the consumer is unset and has seen no second gateway, i.e. while the bus looks like
  one gateway. With a wanted gateway it is refused, since nothing says it is that one's.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from powerwall_bus.shared.contract import UNKNOWN_GATEWAY
from powerwall_bus.shared.messages import GATEWAY_HEADER, GATEWAY_NAME_HEADER

__all__ = ["Gateway", "GatewayFollower", "GatewayView", "Verdict", "looks_like_din", "sender_of"]

#: ``<part number>--<serial>``, e.g. ``1232100-00-E--TG123456789ABC``.
_DIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*--[A-Za-z0-9]+")


def looks_like_din(value: str) -> bool:
    """Whether a wanted gateway is a DIN (a consumer may then bind to it alone) rather than
    a name (only the headers can tell which gateway has it)."""
    return bool(_DIN.fullmatch(value))


@dataclass(frozen=True)
class Gateway:
    """A gateway as messages name it: its DIN and the poller's name for it (either may be
    empty)."""

    din: str = ""
    name: str = ""

    def __bool__(self) -> bool:
        return bool(self.din or self.name)

    def same(self, other: Gateway) -> bool:
        """One gateway: equal DINs, or, when either lacks a DIN, equal names."""
        if self.din and other.din:
            return self.din == other.din
        return bool(self.name) and self.name == other.name

    def merged(self, other: Gateway) -> Gateway:
        """This gateway with what ``other`` (the same one) adds."""
        return Gateway(self.din or other.din, self.name or other.name)

    def label(self) -> str:
        """``home (1232100-00-E--TG123)``, or whichever of the two is known."""
        if self.din and self.name:
            return f"{self.name} ({self.din})"
        return self.din or self.name or "a gateway without identity"


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    return value.strip() if isinstance(value, str) else ""


def sender_of(headers: Mapping[str, Any] | None, body_gateway: str | None = None) -> Gateway:
    """The gateway a delivery is about: the poller's headers, else the envelope's
    ``gateway`` (``body_gateway``; None for a ``MeterStream``). ``unknown`` is no DIN."""
    headers = headers or {}
    din = _text(headers.get(GATEWAY_HEADER)) or (body_gateway or "").strip()
    if din == UNKNOWN_GATEWAY:
        din = ""
    return Gateway(din, _text(headers.get(GATEWAY_NAME_HEADER)))


class Verdict(enum.Enum):
    """What to do with one message, and whether the follower's state changed."""

    TAKE = "take"
    TAKE_FIRST = "take: the followed gateway, seen for the first time"
    SKIP = "skip"
    SKIP_NEW = "skip: a gateway not seen before"

    @property
    def take(self) -> bool:
        """Whether the consumer uses the message."""
        return self in (Verdict.TAKE, Verdict.TAKE_FIRST)


@dataclass(frozen=True)
class GatewayView:
    """A snapshot of the follower for reports (``/stats``, ``/health``)."""

    wanted: str = ""
    followed: Gateway = field(default_factory=Gateway)
    others: tuple[Gateway, ...] = ()

    def problem(self) -> str | None:
        """Why the consumer cannot be trusted to show one gateway, or None."""
        if not self.others:
            return None
        if not self.wanted:
            names = ", ".join(g.label() for g in (self.followed, *self.others))
            return f"several gateways on the bus ({names}): set PWBUS_GATEWAY"
        if not self.followed:
            names = ", ".join(g.label() for g in self.others)
            return f"nothing from gateway {self.wanted!r} yet; the bus carries {names}"
        return None

    def document(self) -> dict[str, Any]:
        """The JSON form: what is wanted, what is followed, what else was seen."""
        return {
            "wanted": self.wanted or None,
            "din": self.followed.din or None,
            "name": self.followed.name or None,
            "others": [g.label() for g in self.others],
        }


class GatewayFollower:
    """Decides per message whether a consumer takes it (see the module's rules)."""

    def __init__(self, wanted: str = "") -> None:
        self.wanted = wanted.strip()
        self.followed = Gateway()  # empty until a message of the followed gateway arrives
        self.others: list[Gateway] = []  # refused gateways, in the order first seen

    def accept(self, din: str = "", name: str = "") -> Verdict:
        """The verdict on a message from the gateway with this DIN and name ("": unknown)."""
        sender = Gateway(din if din != UNKNOWN_GATEWAY else "", name)
        if not sender:
            return Verdict.TAKE if not self.wanted and not self.others else Verdict.SKIP
        if self._is_followed(sender):
            first = not self.followed
            self.followed = self.followed.merged(sender)
            return Verdict.TAKE_FIRST if first else Verdict.TAKE
        for index, other in enumerate(self.others):
            if other.same(sender):
                self.others[index] = other.merged(sender)
                return Verdict.SKIP
        self.others.append(sender)
        return Verdict.SKIP_NEW

    def _is_followed(self, sender: Gateway) -> bool:
        if self.followed:
            return self.followed.same(sender)
        if self.wanted:
            return self.wanted in (sender.din, sender.name)
        return True  # unset: the first gateway with an identity is the one

    def view(self) -> GatewayView:
        """A snapshot for reports."""
        return GatewayView(self.wanted, self.followed, tuple(self.others))

    def problem(self) -> str | None:
        """Why the consumer cannot be trusted to show one gateway, or None."""
        return self.view().problem()

    def say(self, verdict: Verdict, logger: logging.Logger) -> None:
        """Log what ``verdict`` changed, in the same words in every consumer, once per change.

        The followed gateway's first message is INFO; another gateway seen for the first time
        is INFO when the user chose one (``PWBUS_GATEWAY``), else a WARNING saying how to.
        """
        followed = self.followed.label()
        if verdict is Verdict.TAKE_FIRST:
            logger.info("following gateway %s", followed)
        elif verdict is Verdict.SKIP_NEW and self.wanted:
            logger.info(
                "ignoring gateway %s: following %s",
                self.others[-1].label(),
                followed if self.followed else repr(self.wanted),
            )
        elif verdict is Verdict.SKIP_NEW:
            logger.warning(
                "gateway %s is on the bus too: following only %s; set PWBUS_GATEWAY (or "
                "--gateway) to the DIN or name of the one to follow",
                self.others[-1].label(),
                followed,
            )
