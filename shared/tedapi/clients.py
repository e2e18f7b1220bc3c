"""The gateway's paired keys ("authorized clients") over signed TEDAPI: list, add, remove (pure).

Once one key is verified (registered through the cloud, then a Powerwall switch toggled at
the house), that key can, signed over the LAN: list every authorized client, add another
key on its own authority (``add_authorized_client_by_trusted_signature``) and remove any
key. The envelopes travel exactly like the Max Backup ones (:mod:`.commands`): same
``RoutableMessage``, same signature, same answers for a refused signature.

The very first registration is not here: it goes unsigned through the Tesla cloud as JSON
(``grpc_command`` with ``add_authorized_client_request``), which a cloud client builds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.message import DecodeError

from powerwall_bus.shared.errors import TedapiDecodeError
from powerwall_bus.shared.tedapi import schema
from powerwall_bus.shared.tedapi.commands import (
    envelope_from_response,
    raise_error_response,
    sign_request,
)
from powerwall_bus.shared.tedapi.keys import fingerprint

__all__ = [
    "STATE_NAMES",
    "AuthorizedClient",
    "AuthorizedClients",
    "ClientKind",
    "ClientRemoved",
    "ClientResult",
    "build_client_envelope",
    "build_client_request",
    "parse_client_envelope",
    "parse_client_response",
]

#: ``AuthorizedState`` values: only VERIFIED (3) can sign commands.
STATE_NAMES = {
    0: "INVALID",
    1: "PENDING_VERIFICATION",
    2: "PENDING_VERIFICATION_TIMEOUT",
    3: "VERIFIED",
    4: "REMOVED",
}


class ClientKind(enum.StrEnum):
    """The signed calls about authorized clients."""

    LIST = "list-clients"  # list_authorized_clients_request (authorization 5)
    ADD = "add-client"  # add_authorized_client_by_trusted_signature_request (9)
    REMOVE = "remove-client"  # remove_authorized_client_request (3)


@dataclass(frozen=True)
class AuthorizedClient:
    """One paired key as the gateway lists it."""

    public_key: bytes  # DER PKCS#1
    description: str
    state: int  # AuthorizedState: 3 = VERIFIED
    roles: tuple[int, ...] = (1,)
    client_type: int = 1  # AuthorizedClientType: 1 customer mobile app
    key_type: int = 1  # AuthorizedKeyType: 1 RSA
    added: datetime | None = None

    @property
    def verified(self) -> bool:
        """True when the key can sign commands."""
        return self.state == schema.AUTHORIZED_STATE_VERIFIED

    @property
    def state_name(self) -> str:
        """ "VERIFIED", "PENDING_VERIFICATION", ..."""
        return STATE_NAMES.get(self.state, f"STATE_{self.state}")

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER public key: how logs and messages name the key."""
        return fingerprint(self.public_key)


@dataclass(frozen=True)
class AuthorizedClients:
    """The answer to :attr:`ClientKind.LIST`."""

    clients: tuple[AuthorizedClient, ...]
    #: The gateway reports a Powerwall power switch as off (the presence proof under way).
    switch_off: bool = False


@dataclass(frozen=True)
class ClientRemoved:
    """The gateway took a removal (its answer is empty)."""


ClientResult = AuthorizedClients | AuthorizedClient | ClientRemoved


def build_client_envelope(
    kind: ClientKind, din: str, public_key: bytes = b"", description: str = ""
) -> bytes:
    """The serialized envelope of one authorized-client call to the gateway ``din``.

    ``public_key`` (DER PKCS#1) is the key to add or remove; ``description`` names an added
    key in the list (the Tesla app shows it).
    """
    envelope = schema.MessageEnvelope()
    envelope.delivery_channel = schema.DELIVERY_CHANNEL_HERMES_COMMAND
    envelope.sender.authorized_client = schema.AUTHORIZED_CLIENT_CUSTOMER_MOBILE_APP
    envelope.recipient.din = din
    authorization = envelope.authorization
    if kind is ClientKind.LIST:
        authorization.list_authorized_clients_request.SetInParent()
    elif not public_key:
        raise ValueError(f"{kind} needs the public key")
    elif kind is ClientKind.REMOVE:
        authorization.remove_authorized_client_request.public_key = public_key
    else:
        request = authorization.add_authorized_client_by_trusted_signature_request
        request.type = schema.AUTHORIZED_CLIENT_CUSTOMER_MOBILE_APP
        request.description = description
        request.key_type = schema.AUTHORIZED_KEY_TYPE_RSA
        request.public_key = public_key
        request.roles.append(schema.AUTHORIZATION_ROLE_CUSTOMER)
    return bytes(envelope.SerializeToString())


def build_client_request(
    kind: ClientKind,
    din: str,
    key: rsa.RSAPrivateKey,
    now: float,
    *,
    public_key: bytes = b"",
    description: str = "",
    request_uuid: str | None = None,
) -> bytes:
    """The signed body of one authorized-client call (see :func:`build_client_envelope`)."""
    envelope = build_client_envelope(kind, din, public_key, description)
    return sign_request(envelope, din, key, now, request_uuid)


def client_from_record(record: Any) -> AuthorizedClient:
    """An :class:`AuthorizedClient` from an ``AuthorizationRecord`` message."""
    added = (
        datetime.fromtimestamp(int(record.added_time.seconds), UTC)
        if record.HasField("added_time")
        else None
    )
    return AuthorizedClient(
        public_key=bytes(record.public_key),
        description=str(record.description),
        state=int(record.state),
        roles=tuple(int(role) for role in record.roles),
        client_type=int(record.type),
        key_type=int(record.key_type),
        added=added,
    )


def parse_client_envelope(data: bytes) -> ClientResult:
    """Read a reply envelope to an authorized-client call."""
    envelope = schema.MessageEnvelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError:
        raise TedapiDecodeError("the reply envelope is not valid protobuf") from None
    raise_error_response(envelope)
    if envelope.WhichOneof("payload") != "authorization":
        raise TedapiDecodeError("the reply carries no authorization answer")
    authorization = envelope.authorization
    answer = authorization.WhichOneof("message")
    if answer == "list_authorized_clients_response":
        response = authorization.list_authorized_clients_response
        clients = tuple(client_from_record(record) for record in response.clients)
        return AuthorizedClients(clients, bool(response.enable_line_switch_off))
    if answer == "add_authorized_client_by_trusted_signature_response":
        return client_from_record(
            authorization.add_authorized_client_by_trusted_signature_response.client
        )
    if answer == "add_authorized_client_response":
        return client_from_record(authorization.add_authorized_client_response.client)
    if answer == "remove_authorized_client_response":
        return ClientRemoved()
    raise TedapiDecodeError(f"unexpected authorization answer {answer or 'none'}")


def parse_client_response(body: bytes) -> ClientResult:
    """Read the gateway's ``RoutableMessage`` answer to an authorized-client call.

    Raises what :func:`~.commands.envelope_from_response` raises, and
    :class:`~powerwall_bus.shared.errors.TedapiRefused` for an ``error_response``.
    """
    return parse_client_envelope(envelope_from_response(body))
