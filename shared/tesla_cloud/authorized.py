"""The gateway's paired keys through the cloud ``command`` endpoint: register and list.

The first key is registered unsigned (``grpc_command``, ``authorization`` /
``add_authorized_client_request``: RSA key type 1, the public key as base64 DER PKCS#1,
client type 1 "customer mobile app", a description the Tesla app shows), then waits as
``PENDING_VERIFICATION`` until someone toggles a Powerwall switch at the house.

The list answer is the gateway's ``list_authorized_clients_response`` rendered as JSON by
the cloud. Its exact rendering is not documented; clients read energy-device gRPC answers
under ``response.message.Payload.<Category>.Message.<Response>`` (Teslemetry's library),
so :func:`clients_from_answer` looks for the response object wherever it sits and accepts
snake_case or CamelCase names and states as numbers or names. Heavy (imports the TEDAPI
schema for :class:`~powerwall_bus.shared.tedapi.clients.AuthorizedClient`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from powerwall_bus.shared.errors import CloudCommandRefused
from powerwall_bus.shared.tedapi.clients import STATE_NAMES, AuthorizedClient
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud

__all__ = [
    "LIST_RESPONSE_NAMES",
    "add_client_params",
    "clients_from_answer",
    "list_clients",
    "register_client",
]

KEY_TYPE_RSA = 1
CLIENT_TYPE_CUSTOMER_MOBILE_APP = 1
LIST_RESPONSE_NAMES = ("ListAuthorizedClientsResponse", "list_authorized_clients_response")
_STATE_NUMBERS = {name: number for number, name in STATE_NAMES.items()}


def add_client_params(public_der: bytes, description: str) -> dict[str, Any]:
    """The ``add_authorized_client_request`` fields for a DER PKCS#1 public key."""
    return {
        "key_type": KEY_TYPE_RSA,
        "public_key": base64.b64encode(public_der).decode("ascii"),
        "authorized_client_type": CLIENT_TYPE_CUSTOMER_MOBILE_APP,
        "description": description,
    }


def register_client(cloud: TeslaCloud, public_der: bytes, description: str) -> Any:
    """Register ``public_der`` with the site's gateway (it stays pending until the toggle)."""
    return cloud.grpc_command(
        "authorization", "add_authorized_client_request", add_client_params(public_der, description)
    )


def list_clients(cloud: TeslaCloud) -> tuple[AuthorizedClient, ...]:
    """Every key the site's gateway knows, with its state."""
    answer = cloud.grpc_command("authorization", "list_authorized_clients_request")
    return clients_from_answer(answer)


def _find(document: Any, names: tuple[str, ...]) -> Any:
    if isinstance(document, Mapping):
        for name in names:
            if name in document:
                return document[name]
        for value in document.values():
            found = _find(value, names)
            if found is not None:
                return found
    return None


def _field(record: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return None


def _state(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value or "").upper().removeprefix("AUTHORIZED_STATE_")
    return _STATE_NUMBERS.get(text, 0)


def _added(value: Any) -> datetime | None:
    if isinstance(value, Mapping):
        value = value.get("seconds")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(int(value), UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def clients_from_answer(answer: Any) -> tuple[AuthorizedClient, ...]:
    """The authorized clients of a ``list_authorized_clients_request`` answer.

    Raises :class:`CloudCommandRefused` when the answer holds no list response.
    """
    response = _find(answer, LIST_RESPONSE_NAMES)
    if not isinstance(response, Mapping):
        raise CloudCommandRefused("the cloud's answer holds no list of authorized clients")
    clients = []
    for record in response.get("clients") or []:
        if not isinstance(record, Mapping):
            continue
        try:
            der = base64.b64decode(
                str(_field(record, "public_key", "publicKey") or ""), validate=True
            )
        except (binascii.Error, ValueError):
            continue
        roles = _field(record, "roles") or [1]
        clients.append(
            AuthorizedClient(
                public_key=der,
                description=str(_field(record, "description") or ""),
                state=_state(_field(record, "state")),
                roles=tuple(int(r) for r in roles if isinstance(r, int)) or (1,),
                client_type=int(_field(record, "type", "authorized_client_type") or 1),
                key_type=int(_field(record, "key_type", "keyType") or 1),
                added=_added(_field(record, "added_time", "addedTime")),
            )
        )
    return tuple(clients)
