"""The same signed bytes carried through the Tesla cloud: the JSON bodies around them.

Two cloud calls relay a signed ``RoutableMessage`` to the gateway, base64 in JSON:

- ``POST /api/1/energy_sites/{id}/device_command`` (Owner API, as Tesla-API's cloud Max
  Backup script uses it): ``{"data": {"routable_message", "identifier_type": 1,
  "target_id": <DIN>}}``, answered with ``{"response": {"message_envelope_as_bytes"}}``,
  the bare reply envelope (read it with :func:`~.commands.parse_envelope`);
- ``POST /api/1/energy_sites/{id}/command`` with ``command_type`` ``grpc_signed_command``:
  ``{"command_type", "command_properties": {"message": {"routable_message"},
  "identifier_type": 1}}``.

Pure functions: building the bodies, and reading the message back out of either (what a
fake cloud does before it verifies the signature).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from powerwall_bus.shared.errors import TedapiDecodeError

__all__ = [
    "IDENTIFIER_TYPE_GATEWAY_DIN",
    "device_command_body",
    "envelope_from_device_command_reply",
    "routable_message_from_body",
    "signed_command_body",
]

#: ``identifier_type`` for "the target is the gateway DIN".
IDENTIFIER_TYPE_GATEWAY_DIN = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def device_command_body(routable: bytes, din: str) -> dict[str, Any]:
    """The ``device_command`` JSON body for a signed routable message to gateway ``din``."""
    return {
        "data": {
            "routable_message": _b64(routable),
            "identifier_type": IDENTIFIER_TYPE_GATEWAY_DIN,
            "target_id": din,
        }
    }


def signed_command_body(routable: bytes) -> dict[str, Any]:
    """The ``command`` JSON body of type ``grpc_signed_command``."""
    return {
        "command_type": "grpc_signed_command",
        "command_properties": {
            "message": {"routable_message": _b64(routable)},
            "identifier_type": IDENTIFIER_TYPE_GATEWAY_DIN,
        },
    }


def _decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise TedapiDecodeError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TedapiDecodeError(f"{what} is not valid base64") from None


def routable_message_from_body(document: object) -> bytes:
    """The signed ``RoutableMessage`` bytes inside either cloud body."""
    if not isinstance(document, dict):
        raise TedapiDecodeError("the command body is not a JSON object")
    if isinstance(document.get("data"), dict):
        return _decode(document["data"].get("routable_message"), "data.routable_message")
    properties = document.get("command_properties")
    if document.get("command_type") == "grpc_signed_command" and isinstance(properties, dict):
        message = properties.get("message")
        if isinstance(message, dict):
            return _decode(message.get("routable_message"), "message.routable_message")
    raise TedapiDecodeError("no signed routable message in the command body")


def envelope_from_device_command_reply(document: object) -> bytes:
    """The reply envelope bytes of a ``device_command`` answer."""
    if isinstance(document, dict) and isinstance(document.get("response"), dict):
        return _decode(
            document["response"].get("message_envelope_as_bytes"),
            "response.message_envelope_as_bytes",
        )
    raise TedapiDecodeError("no response.message_envelope_as_bytes in the reply")
