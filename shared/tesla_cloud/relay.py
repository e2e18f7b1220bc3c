"""What the cloud relay answers for a signed message, both ways (pure; imports the schema).

The Owner API ``device_command`` relay answers ``{"response": {"message_envelope_as_bytes":
<base64>}}``: the gateway's reply *envelope*, without the ``RoutableMessage`` around it. The
project's channels all return the routable message (the LAN road gets it from the gateway
as is), so :func:`routable_from_answer` puts the envelope back into one, and the readers of
:mod:`powerwall_bus.shared.tedapi.commands` / ``clients`` work on either road.

How the cloud reports a gateway that refused the signature itself is not documented. The
project's fake cloud (and so this reader) uses ``{"response": {"message_envelope_as_bytes":
null, "signed_message_fault": <MessageFaultE number>}}``; the ``grpc_signed_command`` answer
uses the same shape (its real rendering is not documented either). :func:`relay_answer`
builds it from a gateway's routable reply, for fakes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError

from powerwall_bus.shared.errors import TedapiDecodeError
from powerwall_bus.shared.tedapi import schema

__all__ = ["relay_answer", "routable_from_answer"]


def relay_answer(reply: bytes) -> dict[str, Any]:
    """The relay's JSON answer for a gateway's ``RoutableMessage`` reply (fakes)."""
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(reply)
    except DecodeError:
        raise TedapiDecodeError("the gateway's reply is not a RoutableMessage") from None
    if message.HasField("signed_message_status"):
        fault = int(message.signed_message_status.signed_message_fault)
        if fault or message.signed_message_status.operation_status == schema.OPERATION_STATUS_ERROR:
            return {"response": {"message_envelope_as_bytes": None, "signed_message_fault": fault}}
    envelope = bytes(message.protobuf_message_as_bytes)
    return {"response": {"message_envelope_as_bytes": base64.b64encode(envelope).decode("ascii")}}


def routable_from_answer(answer: Any) -> bytes:
    """A serialized ``RoutableMessage`` holding what the relay answered (envelope or fault).

    Raises :class:`TedapiDecodeError` when the answer holds neither.
    """
    response = answer.get("response") if isinstance(answer, Mapping) else None
    if not isinstance(response, Mapping):
        raise TedapiDecodeError("the relay's answer has no response object")
    message = schema.RoutableMessage()
    message.from_destination.domain = schema.DOMAIN_ENERGY_DEVICE
    fault = response.get("signed_message_fault")
    if isinstance(fault, int) and not isinstance(fault, bool) and fault:
        message.signed_message_status.operation_status = schema.OPERATION_STATUS_ERROR
        message.signed_message_status.signed_message_fault = fault
        return bytes(message.SerializeToString())
    text = response.get("message_envelope_as_bytes")
    if not isinstance(text, str) or not text:
        raise TedapiDecodeError("the relay's answer carries no envelope")
    try:
        message.protobuf_message_as_bytes = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TedapiDecodeError("response.message_envelope_as_bytes is not valid base64") from None
    return bytes(message.SerializeToString())
