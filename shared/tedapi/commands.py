"""Max Backup over signed TEDAPI: build the request bytes, read the gateway's answer (pure).

``build_request(kind, din, key, now, event=...)`` returns the body to POST to
``https://<gateway>/tedapi/v1r`` (or to relay through the cloud): a ``RoutableMessage`` for
the energy-device domain carrying the serialized ``MessageEnvelope`` and its RSA signature.
``parse_response(body)`` reads the gateway's ``RoutableMessage`` back into a typed result
or raises a :class:`~powerwall_bus.shared.errors.TedapiError`; ``parse_envelope`` does the
same for a bare envelope (the cloud ``device_command`` relay answers with one).

The clock is a parameter (``now``, Unix seconds) everywhere, so the signature expiry is
testable and nothing here reads the time or the random generator by itself except the
request uuid when none is given.
"""

from __future__ import annotations

import enum
import uuid as uuid_module
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.message import DecodeError

from powerwall_bus.shared.errors import (
    TedapiDecodeError,
    TedapiFault,
    TedapiKeyNotVerified,
    TedapiRefused,
)
from powerwall_bus.shared.max_backup import MIN_DURATION, BackupEvent
from powerwall_bus.shared.tedapi import schema
from powerwall_bus.shared.tedapi.keys import public_der
from powerwall_bus.shared.tedapi.signing import expires_at_for, sign_envelope

__all__ = [
    "FAULT_NAMES",
    "Acknowledged",
    "BackupEvents",
    "Kind",
    "Result",
    "build_envelope",
    "build_request",
    "envelope_from_response",
    "fault_name",
    "parse_envelope",
    "parse_response",
    "raise_error_response",
    "scheduled_event",
    "sign_request",
]

#: ``MessageFaultE`` values a gateway may put in ``signed_message_status`` (short names).
FAULT_NAMES: dict[int, str] = {
    0: "NONE",
    1: "BUSY",
    2: "TIMEOUT",
    3: "UNKNOWN_KEY_ID",
    4: "INACTIVE_KEY",
    5: "INVALID_SIGNATURE",
    6: "INVALID_TOKEN_OR_COUNTER",
    7: "INSUFFICIENT_PRIVILEGES",
    8: "INVALID_DOMAINS",
    9: "INVALID_COMMAND",
    10: "DECODING",
    11: "INTERNAL",
    12: "WRONG_PERSONALIZATION",
    13: "BAD_PARAMETER",
    14: "KEYCHAIN_IS_FULL",
    15: "INCORRECT_EPOCH",
    16: "IV_INCORRECT_LENGTH",
    17: "TIME_EXPIRED",
    18: "NOT_PROVISIONED_WITH_IDENTITY",
    19: "COULD_NOT_HASH_METADATA",
    20: "TIME_TO_LIVE_TOO_LONG",
    21: "REMOTE_ACCESS_DISABLED",
    22: "REMOTE_SERVICE_ACCESS_DISABLED",
    23: "COMMAND_REQUIRES_ACCOUNT_CREDENTIALS",
    24: "REQUEST_MTU_EXCEEDED",
    25: "RESPONSE_MTU_EXCEEDED",
    26: "REPEATED_COUNTER",
    27: "INVALID_KEY_HANDLE",
    28: "REQUIRES_RESPONSE_ENCRYPTION",
    29: "COMMAND_REQUIRES_PHYSICAL_PROXIMITY",
}

#: What a registered but unverified key gets instead of an envelope (field 10 as text).
NOT_VERIFIED_TEXT = b"v1r: client authorization not verified"


def fault_name(fault: int) -> str:
    """The short ``MessageFaultE`` name of ``fault`` ("FAULT_<n>" when unknown)."""
    return FAULT_NAMES.get(fault, f"FAULT_{fault}")


class Kind(enum.StrEnum):
    """The three Max Backup calls."""

    LIST = "list"  # get_backup_events_request (49)
    SCHEDULE = "schedule"  # schedule_manual_backup_event_request (45)
    CANCEL = "cancel"  # cancel_manual_backup_event_request (47)


@dataclass(frozen=True)
class BackupEvents:
    """The answer to :attr:`Kind.LIST`: the manual event (Max Backup) if one is set, and
    the gateway's other backup events (e.g. storm watch)."""

    manual: BackupEvent | None
    others: tuple[BackupEvent, ...] = ()


@dataclass(frozen=True)
class Acknowledged:
    """The gateway took a schedule or cancel (its response body is empty)."""

    kind: Kind


Result = BackupEvents | Acknowledged


# --------------------------------------------------------------------------- requests


def build_envelope(kind: Kind, din: str, event: BackupEvent | None = None) -> bytes:
    """The serialized ``MessageEnvelope`` of one call to the gateway ``din``.

    ``event`` is required for :attr:`Kind.SCHEDULE`: its start becomes ``start_time`` and
    its length ``duration_seconds`` (whole seconds, at least 60: the gateway refuses
    shorter ones).
    """
    envelope = schema.MessageEnvelope()
    envelope.delivery_channel = schema.DELIVERY_CHANNEL_HERMES_COMMAND
    envelope.sender.authorized_client = schema.AUTHORIZED_CLIENT_CUSTOMER_MOBILE_APP
    envelope.recipient.din = din
    teg = envelope.teg
    if kind is Kind.LIST:
        teg.get_backup_events_request.SetInParent()
    elif kind is Kind.CANCEL:
        teg.cancel_manual_backup_event_request.SetInParent()
    else:
        if event is None:
            raise ValueError("a schedule request needs the event")
        duration = int(event.duration.total_seconds())
        if duration < MIN_DURATION.total_seconds():
            raise ValueError(f"Max Backup lasts at least 60 s, not {duration} s")
        if event.start.utcoffset() is None:
            raise ValueError("the event start must be timezone-aware")
        info = teg.schedule_manual_backup_event_request.scheduling_info
        info.start_time.seconds = int(event.start.timestamp())
        info.duration_seconds = duration
        info.priority = schema.MAX_PRIORITY
    return bytes(envelope.SerializeToString())


def sign_request(
    envelope: bytes, din: str, key: rsa.RSAPrivateKey, now: float, request_uuid: str | None = None
) -> bytes:
    """Wrap ``envelope`` in a signed ``RoutableMessage``; valid until ceil(now) + 12 s."""
    expires_at = expires_at_for(now)
    message = schema.RoutableMessage()
    message.to_destination.domain = schema.DOMAIN_ENERGY_DEVICE
    message.protobuf_message_as_bytes = envelope
    message.uuid = (request_uuid or str(uuid_module.uuid4())).encode("ascii")
    signature_data = message.signature_data
    signature_data.signer_identity.public_key = public_der(key)
    signature_data.rsa_data.expires_at = expires_at
    signature_data.rsa_data.signature = sign_envelope(key, din, expires_at, envelope)
    return bytes(message.SerializeToString())


def build_request(
    kind: Kind,
    din: str,
    key: rsa.RSAPrivateKey,
    now: float,
    *,
    event: BackupEvent | None = None,
    request_uuid: str | None = None,
) -> bytes:
    """The signed body of one Max Backup call (see :func:`build_envelope`)."""
    return sign_request(build_envelope(kind, din, event), din, key, now, request_uuid)


# --------------------------------------------------------------------------- replies


def scheduled_event(info: Any) -> BackupEvent:
    """The ``[start, start + duration)`` event of a ``ControlEventSchedulingInfo``."""
    start = int(info.start_time.seconds)
    duration = int(info.duration_seconds)
    begin = datetime.fromtimestamp(start, UTC)
    return BackupEvent(begin, datetime.fromtimestamp(start + duration, UTC))


def raise_error_response(envelope: Any) -> None:
    """Raise :class:`TedapiRefused` when a parsed reply envelope carries an ``error_response``."""
    if envelope.WhichOneof("payload") == "common" and envelope.common.HasField("error_response"):
        status = envelope.common.error_response.status
        raise TedapiRefused(int(status.code), str(status.message)[:200])


def parse_envelope(data: bytes) -> Result:
    """Read a reply ``MessageEnvelope``: backup events, an acknowledgement, or an error.

    Raises :class:`TedapiRefused` for an ``error_response`` and :class:`TedapiDecodeError`
    for anything else that is not one of the three answers.
    """
    envelope = schema.MessageEnvelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError:
        raise TedapiDecodeError("the reply envelope is not valid protobuf") from None
    raise_error_response(envelope)
    payload = envelope.WhichOneof("payload")
    if payload != "teg":
        raise TedapiDecodeError(f"the reply carries no TEG answer ({payload or 'nothing'})")
    answer = envelope.teg.WhichOneof("message")
    if answer == "get_backup_events_response":
        response = envelope.teg.get_backup_events_response
        manual = (
            scheduled_event(response.manual_backup_event.scheduling_info)
            if response.HasField("manual_backup_event")
            else None
        )
        others = tuple(scheduled_event(item.scheduling_info) for item in response.backup_events)
        return BackupEvents(manual, others)
    if answer == "schedule_manual_backup_event_response":
        return Acknowledged(Kind.SCHEDULE)
    if answer == "cancel_manual_backup_event_response":
        return Acknowledged(Kind.CANCEL)
    raise TedapiDecodeError(f"unexpected TEG answer {answer or 'none'}")


def envelope_from_response(body: bytes) -> bytes:
    """The reply envelope bytes of the gateway's ``RoutableMessage`` answer to a ``v1r`` POST.

    Raises :class:`TedapiFault` when ``signed_message_status`` carries a fault (the
    signature, key, DIN or expiry was refused), :class:`TedapiKeyNotVerified` for a key
    still waiting for the switch toggle, :class:`TedapiDecodeError` when there is no
    envelope.
    """
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise TedapiDecodeError("the reply is not a RoutableMessage") from None
    if message.HasField("signed_message_status"):
        status = message.signed_message_status
        fault = int(status.signed_message_fault)
        if fault or status.operation_status == schema.OPERATION_STATUS_ERROR:
            raise TedapiFault(fault, fault_name(fault))
    if message.WhichOneof("payload") != "protobuf_message_as_bytes":
        raise TedapiDecodeError("the reply carries no envelope")
    data = bytes(message.protobuf_message_as_bytes)
    if not data:
        raise TedapiDecodeError("the reply carries an empty envelope")
    if data.startswith(b"v1r:"):
        if data.startswith(NOT_VERIFIED_TEXT):
            raise TedapiKeyNotVerified("the key is registered but not verified yet")
        raise TedapiDecodeError("the gateway answered with text instead of an envelope")
    return data


def parse_response(body: bytes) -> Result:
    """Read the gateway's ``RoutableMessage`` answer to a Max Backup call.

    Raises what :func:`envelope_from_response` and :func:`parse_envelope` raise.
    """
    return parse_envelope(envelope_from_response(body))
