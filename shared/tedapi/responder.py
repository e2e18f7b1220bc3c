"""The gateway's side of signed TEDAPI: check a request, and write the answers (pure).

Used by the simulated gateway and any fake that relays signed commands (the cloud's
``device_command``): one implementation of the rules, so a client tested against them is
tested against the same bytes a real gateway would reject. The checks, in order, each
answered with the ``MessageFaultE`` a gateway reports (``docs/tedapi.md``):

1. the body is a ``RoutableMessage`` with an envelope and an RSA signature (``DECODING``);
2. it is addressed to the energy-device domain (``INVALID_DOMAINS``);
3. the signer's public key (DER PKCS#1, byte for byte) is paired (``UNKNOWN_KEY_ID``);
   a key paired but not verified gets the plain-text answer instead (:class:`NotVerified`);
4. the envelope's ``recipient.din`` is this gateway (``WRONG_PERSONALIZATION``);
5. the signature over TLV(this DIN, expires_at) + envelope is valid (``INVALID_SIGNATURE``);
6. ``expires_at`` has not passed (``TIME_EXPIRED``).

The signature is checked before the expiry so an unauthenticated ``expires_at`` is never
trusted. :func:`verify_signed` stops there; :func:`verify_request` (and
:func:`inspect_request`, for a relay) also insists on a Max Backup call, and
:func:`client_call` reads an authorized-client call.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from powerwall_bus.shared.errors import TedapiError, TedapiFault, TedapiKeyError
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.tedapi import schema
from powerwall_bus.shared.tedapi.clients import AuthorizedClient, ClientKind
from powerwall_bus.shared.tedapi.commands import (
    NOT_VERIFIED_TEXT,
    Kind,
    fault_name,
    scheduled_event,
)
from powerwall_bus.shared.tedapi.keys import public_key_from_der
from powerwall_bus.shared.tedapi.signing import signature_valid

__all__ = [
    "FAULT_DECODING",
    "FAULT_INVALID_DOMAINS",
    "FAULT_INVALID_SIGNATURE",
    "FAULT_TIME_EXPIRED",
    "FAULT_UNKNOWN_KEY_ID",
    "FAULT_WRONG_PERSONALIZATION",
    "ClientCall",
    "NotVerified",
    "SignedEnvelope",
    "VerifiedRequest",
    "acknowledgement_reply",
    "backup_call",
    "backup_events_reply",
    "client_added_reply",
    "client_call",
    "client_removed_reply",
    "clients_reply",
    "error_reply",
    "fault_reply",
    "inspect_request",
    "not_verified_reply",
    "verify_request",
    "verify_signed",
]

FAULT_UNKNOWN_KEY_ID = 3
FAULT_INVALID_SIGNATURE = 5
FAULT_INVALID_DOMAINS = 8
FAULT_DECODING = 10
FAULT_WRONG_PERSONALIZATION = 12
FAULT_TIME_EXPIRED = 17


class NotVerified(TedapiError):
    """The signer is paired but has not proven presence yet (no switch toggle)."""


@dataclass(frozen=True)
class VerifiedRequest:
    """A request that passed every check: what it asks and who signed it."""

    kind: Kind
    event: BackupEvent | None  # the requested Max Backup (schedule only)
    signer: bytes  # DER PKCS#1 public key
    request_uuid: bytes
    expires_at: int


def _fault(number: int) -> TedapiFault:
    return TedapiFault(number, fault_name(number))


def backup_call(envelope: Any) -> tuple[Kind, BackupEvent | None]:
    """The Max Backup call in a verified envelope; a ``DECODING`` fault when it is none."""
    if envelope.WhichOneof("payload") != "teg":
        raise _fault(FAULT_DECODING)
    teg = envelope.teg
    call = teg.WhichOneof("message")
    if call == "get_backup_events_request":
        return Kind.LIST, None
    if call == "cancel_manual_backup_event_request":
        return Kind.CANCEL, None
    if call == "schedule_manual_backup_event_request":
        return Kind.SCHEDULE, scheduled_event(
            teg.schedule_manual_backup_event_request.scheduling_info
        )
    raise _fault(FAULT_DECODING)


@dataclass(frozen=True)
class SignedEnvelope:
    """A request whose signature passed: its parsed ``MessageEnvelope`` and who signed it."""

    envelope: Any
    signer: bytes  # DER PKCS#1 public key
    request_uuid: bytes
    expires_at: int


def verify_signed(
    body: bytes,
    din: str,
    paired: Collection[bytes],
    now: float,
    *,
    pending: Collection[bytes] = (),
) -> SignedEnvelope:
    """Check ``body`` as the gateway ``din`` would at ``now`` (Unix seconds), whatever it asks.

    ``paired`` holds the verified keys, ``pending`` the registered but unverified ones (DER
    PKCS#1). Raises :class:`TedapiFault` with the fault to answer, or :class:`NotVerified`.
    """
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise _fault(FAULT_DECODING) from None
    if (
        message.WhichOneof("payload") != "protobuf_message_as_bytes"
        or message.WhichOneof("sub_sigData") != "signature_data"
        or message.signature_data.WhichOneof("sig_type") != "rsa_data"
    ):
        raise _fault(FAULT_DECODING)
    if message.to_destination.WhichOneof("sub_destination") != "domain" or (
        message.to_destination.domain != schema.DOMAIN_ENERGY_DEVICE
    ):
        raise _fault(FAULT_INVALID_DOMAINS)
    signer = bytes(message.signature_data.signer_identity.public_key)
    if signer not in paired:
        if signer in pending:
            raise NotVerified("the key is paired but not verified")
        raise _fault(FAULT_UNKNOWN_KEY_ID)
    envelope_bytes = bytes(message.protobuf_message_as_bytes)
    envelope = schema.MessageEnvelope()
    try:
        envelope.ParseFromString(envelope_bytes)
    except DecodeError:
        raise _fault(FAULT_DECODING) from None
    if envelope.recipient.WhichOneof("id") != "din" or envelope.recipient.din != din:
        raise _fault(FAULT_WRONG_PERSONALIZATION)
    rsa_data = message.signature_data.rsa_data
    expires_at = int(rsa_data.expires_at)
    try:
        key = public_key_from_der(signer)
    except TedapiKeyError:
        raise _fault(FAULT_UNKNOWN_KEY_ID) from None
    if not signature_valid(key, bytes(rsa_data.signature), din, expires_at, envelope_bytes):
        raise _fault(FAULT_INVALID_SIGNATURE)
    if expires_at < now:
        raise _fault(FAULT_TIME_EXPIRED)
    return SignedEnvelope(envelope, signer, bytes(message.uuid), expires_at)


def verify_request(
    body: bytes,
    din: str,
    paired: Collection[bytes],
    now: float,
    *,
    pending: Collection[bytes] = (),
) -> VerifiedRequest:
    """:func:`verify_signed`, for a Max Backup call (anything else is ``DECODING``)."""
    signed = verify_signed(body, din, paired, now, pending=pending)
    kind, event = backup_call(signed.envelope)
    return VerifiedRequest(kind, event, signed.signer, signed.request_uuid, signed.expires_at)


@dataclass(frozen=True)
class ClientCall:
    """What an authorized-client request asks (the key to add or remove, the new name)."""

    kind: ClientKind
    public_key: bytes = b""
    description: str = ""


def client_call(envelope: Any) -> ClientCall | None:
    """The authorized-client call in a verified envelope, None when it is not one."""
    if envelope.WhichOneof("payload") != "authorization":
        return None
    authorization = envelope.authorization
    call = authorization.WhichOneof("message")
    if call == "list_authorized_clients_request":
        return ClientCall(ClientKind.LIST)
    if call == "remove_authorized_client_request":
        return ClientCall(
            ClientKind.REMOVE, bytes(authorization.remove_authorized_client_request.public_key)
        )
    if call == "add_authorized_client_by_trusted_signature_request":
        request = authorization.add_authorized_client_by_trusted_signature_request
        return ClientCall(ClientKind.ADD, bytes(request.public_key), str(request.description))
    return None


def inspect_request(body: bytes, din: str, now: float) -> VerifiedRequest:
    """What a relay (the poller) checks before it passes ``body`` on to the gateway ``din``.

    The same checks as :func:`verify_request`, with the key the request names standing in
    for the paired keys: a signed Max Backup call for this gateway, its signature made by
    that key, not expired. Whether the key is paired only the gateway knows. Raises
    :class:`TedapiFault` (e.g. ``TIME_EXPIRED`` for a command that waited too long).
    """
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise _fault(FAULT_DECODING) from None
    signer = bytes(message.signature_data.signer_identity.public_key)
    return verify_request(body, din, {signer}, now)


def inspect_client_request(body: bytes, din: str, now: float) -> ClientCall:
    """:func:`inspect_request` for the paired-keys calls (list, add by trusted signature,
    remove): signed by the key it names, for this gateway, unexpired. Anything else is
    ``DECODING``."""
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise _fault(FAULT_DECODING) from None
    signer = bytes(message.signature_data.signer_identity.public_key)
    call = client_call(verify_signed(body, din, {signer}, now).envelope)
    if call is None:
        raise _fault(FAULT_DECODING)
    return call


# --------------------------------------------------------------------------- replies


def _routable(request_uuid: bytes) -> Any:
    message = schema.RoutableMessage()
    message.from_destination.domain = schema.DOMAIN_ENERGY_DEVICE
    if request_uuid:
        message.request_uuid = request_uuid
    return message


def _reply_envelope(din: str) -> Any:
    envelope = schema.MessageEnvelope()
    envelope.delivery_channel = schema.DELIVERY_CHANNEL_HERMES_COMMAND
    envelope.sender.din = din
    envelope.recipient.authorized_client = schema.AUTHORIZED_CLIENT_CUSTOMER_MOBILE_APP
    return envelope


def _wrap(envelope: Any, request_uuid: bytes) -> bytes:
    message = _routable(request_uuid)
    message.protobuf_message_as_bytes = envelope.SerializeToString()
    return bytes(message.SerializeToString())


def fault_reply(fault: int, request_uuid: bytes = b"") -> bytes:
    """A refused signed message: ``signed_message_status {ERROR, fault}``, no envelope."""
    message = _routable(request_uuid)
    message.signed_message_status.operation_status = schema.OPERATION_STATUS_ERROR
    message.signed_message_status.signed_message_fault = fault
    return bytes(message.SerializeToString())


def not_verified_reply(request_uuid: bytes = b"") -> bytes:
    """What a paired but unverified key gets: the plain text in place of the envelope."""
    message = _routable(request_uuid)
    message.protobuf_message_as_bytes = NOT_VERIFIED_TEXT
    return bytes(message.SerializeToString())


def _scheduling_info(target: Any, event: BackupEvent) -> None:
    target.start_time.seconds = int(event.start.timestamp())
    target.duration_seconds = int(event.duration.total_seconds())
    target.priority = schema.MAX_PRIORITY


def backup_events_envelope(din: str, manual: BackupEvent | None) -> bytes:
    """The serialized ``get_backup_events_response`` envelope (bare, as the cloud relays it)."""
    envelope = _reply_envelope(din)
    response = envelope.teg.get_backup_events_response
    response.SetInParent()
    if manual is not None:
        _scheduling_info(response.manual_backup_event.scheduling_info, manual)
    return bytes(envelope.SerializeToString())


def backup_events_reply(din: str, manual: BackupEvent | None, request_uuid: bytes = b"") -> bytes:
    """The answer to a list call: the manual event when one is set."""
    envelope = schema.MessageEnvelope()
    envelope.ParseFromString(backup_events_envelope(din, manual))
    return _wrap(envelope, request_uuid)


def acknowledgement_reply(din: str, kind: Kind, request_uuid: bytes = b"") -> bytes:
    """The (empty) answer to a schedule or cancel call."""
    envelope = _reply_envelope(din)
    if kind is Kind.SCHEDULE:
        envelope.teg.schedule_manual_backup_event_response.SetInParent()
    elif kind is Kind.CANCEL:
        envelope.teg.cancel_manual_backup_event_response.SetInParent()
    else:
        raise ValueError("only schedule and cancel are acknowledged")
    return _wrap(envelope, request_uuid)


def error_reply(din: str, code: int, detail: str, request_uuid: bytes = b"") -> bytes:
    """A command refused after a valid signature: ``common.error_response.status``."""
    envelope = _reply_envelope(din)
    status = envelope.common.error_response.status
    status.code = code
    status.message = detail
    return _wrap(envelope, request_uuid)


def _record(target: Any, client: AuthorizedClient) -> None:
    target.type = client.client_type
    target.description = client.description
    target.key_type = client.key_type
    target.public_key = client.public_key
    target.roles.extend(client.roles)
    target.state = client.state
    target.verification = schema.VERIFICATION_PRESENCE_PROOF
    if client.added is not None:
        target.added_time.seconds = int(client.added.timestamp())


def clients_reply(
    din: str,
    clients: Sequence[AuthorizedClient],
    switch_off: bool = False,
    request_uuid: bytes = b"",
) -> bytes:
    """The answer to a list of authorized clients."""
    envelope = _reply_envelope(din)
    response = envelope.authorization.list_authorized_clients_response
    response.SetInParent()
    for client in clients:
        _record(response.clients.add(), client)
    response.enable_line_switch_off = switch_off
    return _wrap(envelope, request_uuid)


def client_added_reply(din: str, client: AuthorizedClient, request_uuid: bytes = b"") -> bytes:
    """The answer to an add by trusted signature: the new record."""
    envelope = _reply_envelope(din)
    response = envelope.authorization.add_authorized_client_by_trusted_signature_response
    _record(response.client, client)
    return _wrap(envelope, request_uuid)


def client_removed_reply(din: str, request_uuid: bytes = b"") -> bytes:
    """The (empty) answer to a removal."""
    envelope = _reply_envelope(din)
    envelope.authorization.remove_authorized_client_response.SetInParent()
    return _wrap(envelope, request_uuid)
