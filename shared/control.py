"""The command contract: a signed TEDAPI command over the bus, and the poller's answer (pure).

The poller is the only process that talks to the gateway, so a dispatcher that wants to
list, schedule or cancel Max Backup over the LAN sends its signed ``RoutableMessage`` to
the poller as a ``control.tedapi`` message under ``control.<DIN>.tedapi``, with
``reply_to`` and ``correlation_id`` set; the poller posts it to ``/tedapi/v1r`` between its
reads and answers with a ``control.tedapi.reply`` on ``reply_to``: the gateway's answer
body, or a :class:`Refusal` saying why it was not sent (or no answer came).

Only the bytes cross the bus, never a key: the signature is the credential, checked by the
poller before it sends anything (:func:`~powerwall_bus.shared.tedapi.responder.inspect_request`)
and by the gateway after. This module builds and reads both bodies; the AMQP side is the
poller's (``producers/poller/relay.py``) and the dispatcher's (``consumers/dispatch/lan.py``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import Any

from powerwall_bus.shared.contract import CONTROL_TEDAPI, CONTROL_TEDAPI_REPLY, routing_key
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.messages import SCHEMA_VERSION, iso_time, loads
from powerwall_bus.shared.octopus.plan import parse_time

__all__ = [
    "MAX_COMMAND_BYTES",
    "Command",
    "Reason",
    "Refusal",
    "Reply",
    "command_body",
    "command_key",
    "parse_command",
    "parse_reply",
    "reply_body",
]

#: The calls a relayed command may carry: Max Backup (list, schedule, cancel) and the
#: paired-keys calls (``pwbus pair add-lan`` and friends).
CALLS = ("list", "schedule", "cancel", "list-clients", "add-client", "remove-client")

#: A command body larger than this is refused unread (a signed Max Backup call is ~1.3 kB).
MAX_COMMAND_BYTES = 64 * 1024
_MAX_DETAIL = 300
_SEPARATORS = (",", ":")


class Reason(enum.StrEnum):
    """Why the poller did not relay a command, or no gateway answer came back."""

    MALFORMED = "malformed"  # not a control.tedapi body
    NOT_SIGNED = "not_signed"  # undecodable, or no valid RSA signature by the key it names
    EXPIRED = "expired"  # its signature's expires_at has passed
    REPLAYED = "replayed"  # this very signature was relayed already
    WRONG_GATEWAY = "wrong_gateway"  # signed for another DIN
    NOT_MAX_BACKUP = "not_max_backup"  # signed, but not list/schedule/cancel of Max Backup
    COOLDOWN = "cooldown"  # the gateway's 429 cool-down: nothing is sent until retry_at
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    GATEWAY_ERROR = "gateway_error"  # an HTTP error status
    BUSY = "busy"  # commands already wait for the reader
    STOPPING = "stopping"  # the poller is shutting down


@dataclass(frozen=True)
class Command:
    """A ``control.tedapi`` body: the signed bytes for the gateway ``gateway``."""

    gateway: str
    request: bytes


@dataclass(frozen=True)
class Refusal:
    """Why a command was not relayed; ``retry_at`` (Unix seconds) for a cool-down."""

    reason: Reason
    detail: str
    retry_at: float | None = None


@dataclass(frozen=True)
class Reply:
    """A ``control.tedapi.reply``: the gateway's answer (``response``) or a refusal."""

    gateway: str
    call: str | None  # one of CALLS, once the signature was checked
    response: bytes | None
    refusal: Refusal | None


def command_key(din: str) -> str:
    """The routing key of commands for the gateway ``din`` (``control.<DIN>.tedapi``)."""
    return routing_key(CONTROL_TEDAPI, din)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedMessage(f"{what} is missing or not a string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedMessage(f"{what} is not base64") from None


def command_body(din: str, request: bytes, now: float) -> bytes:
    """The body of a command carrying ``request`` (signed bytes) for the gateway ``din``."""
    document = {
        "version": SCHEMA_VERSION,
        "kind": CONTROL_TEDAPI,
        "time": iso_time(now),
        "gateway": din,
        "request": _b64(request),
    }
    return json.dumps(document, separators=_SEPARATORS).encode()


def _document(body: bytes, kind: str) -> dict[str, Any]:
    try:
        document = loads(body)
    except MalformedMessage:
        raise
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessage("body is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedMessage("body is not a JSON object")
    if document.get("version") != SCHEMA_VERSION or document.get("kind") != kind:
        raise MalformedMessage(f"not a {kind} message of version {SCHEMA_VERSION}")
    if not isinstance(document.get("gateway"), str) or not document["gateway"]:
        raise MalformedMessage("gateway is missing or not a string")
    return document


def parse_command(body: bytes) -> Command:
    """Read a ``control.tedapi`` body; raises MalformedMessage (also when too large)."""
    if len(body) > MAX_COMMAND_BYTES:
        raise MalformedMessage(f"the command is {len(body)} bytes, more than {MAX_COMMAND_BYTES}")
    document = _document(body, CONTROL_TEDAPI)
    request = _unb64(document.get("request"), "request")
    if not request:
        raise MalformedMessage("request is empty")
    return Command(document["gateway"], request)


def reply_body(
    din: str,
    now: float,
    *,
    call: str | None = None,
    response: bytes | None = None,
    refusal: Refusal | None = None,
) -> bytes:
    """The poller's answer: exactly one of ``response`` (the gateway's body) and ``refusal``."""
    if (response is None) == (refusal is None):
        raise ValueError("a reply carries either the gateway's answer or a refusal")
    refused = None
    if refusal is not None:
        refused = {
            "reason": refusal.reason.value,
            "detail": " ".join(refusal.detail.split())[:_MAX_DETAIL],
            "retry_at": None if refusal.retry_at is None else iso_time(refusal.retry_at),
        }
    document = {
        "version": SCHEMA_VERSION,
        "kind": CONTROL_TEDAPI_REPLY,
        "time": iso_time(now),
        "gateway": din,
        "outcome": "answered" if response is not None else "refused",
        "call": call,
        "response": None if response is None else _b64(response),
        "refusal": refused,
    }
    return json.dumps(document, separators=_SEPARATORS).encode()


def _epoch(text: object) -> float | None:
    return None if text is None else parse_time(text).timestamp()


def parse_reply(body: bytes) -> Reply:
    """Read a ``control.tedapi.reply`` body; raises MalformedMessage."""
    document = _document(body, CONTROL_TEDAPI_REPLY)
    call = document.get("call")
    if call is not None and call not in CALLS:
        raise MalformedMessage(f"call {call!r} is not one of {', '.join(CALLS)}")
    outcome = document.get("outcome")
    if outcome == "answered":
        return Reply(document["gateway"], call, _unb64(document.get("response"), "response"), None)
    if outcome != "refused":
        raise MalformedMessage(f"outcome {outcome!r} is not answered or refused")
    refused = document.get("refusal")
    if not isinstance(refused, dict):
        raise MalformedMessage("a refused reply without its refusal")
    try:
        reason = Reason(str(refused.get("reason")))
    except ValueError:
        raise MalformedMessage(f"unknown refusal reason {refused.get('reason')!r}") from None
    detail = refused.get("detail")
    refusal = Refusal(
        reason, detail if isinstance(detail, str) else "", _epoch(refused.get("retry_at"))
    )
    return Reply(document["gateway"], call, None, refusal)
