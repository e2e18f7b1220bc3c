"""``pwbus tedapi demo``: one signed ``v1r`` message built, checked and shown field by field.

A reader learning the format (``docs/tedapi.md``) sees the bytes a dispatcher would send:
every field of the ``RoutableMessage`` with its protobuf field number, the ``MessageEnvelope``
it carries decoded the same way, the TLV run the signature covers, and the verdict of the
gateway-side check (:func:`shared.tedapi.responder.verify_request`) on it. Everything here is
pure but for the RSA signature; :func:`send` is the one step that touches the bus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from powerwall_bus.consumers.dispatch.channel import SignedChannel
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.tedapi import schema
from powerwall_bus.shared.tedapi.commands import (
    Kind,
    build_envelope,
    fault_name,
    parse_response,
    sign_request,
)
from powerwall_bus.shared.tedapi.keys import fingerprint, public_der
from powerwall_bus.shared.tedapi.responder import verify_request
from powerwall_bus.shared.tedapi.signing import expires_at_for, tlv_header

__all__ = ["Demo", "build", "describe", "send"]

_BYTES_SHOWN = 24  # longer byte fields are shown by length and their first bytes
_NESTED = {"protobuf_message_as_bytes": schema.MessageEnvelope}  # bytes that hold a message


@dataclass(frozen=True)
class Demo:
    """One built request and what is known about it."""

    kind: Kind
    din: str
    body: bytes  # the serialized RoutableMessage, as POSTed to /tedapi/v1r
    envelope: bytes
    expires_at: int
    signer: bytes  # DER PKCS#1 public key


def build(kind: Kind, din: str, key: rsa.RSAPrivateKey, now: float, *, minutes: int = 30) -> Demo:
    """A signed request of ``kind`` for ``din`` at ``now``; a schedule starts at ``now``."""
    event = None
    if kind is Kind.SCHEDULE:
        start = datetime.fromtimestamp(int(now), UTC)
        event = BackupEvent(start, start + timedelta(minutes=minutes))
    envelope = build_envelope(kind, din, event)
    body = sign_request(envelope, din, key, now)
    return Demo(kind, din, body, envelope, expires_at_for(now), public_der(key))


def _value(field: FieldDescriptor, value: Any, depth: int) -> Iterator[str]:
    pad = "  " * depth
    head = f"{pad}#{field.number} {field.name}"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        yield head
        yield from _fields(value, depth + 1)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        data = bytes(value)
        nested = _NESTED.get(field.name)
        if nested is not None:
            inner = nested()
            try:
                inner.ParseFromString(data)
            except DecodeError:
                yield f"{head} = {len(data)} bytes (not a {nested.__name__})"
                return
            yield f"{head} = {len(data)} bytes, a {nested.__name__}:"
            yield from _fields(inner, depth + 1)
        elif data and all(32 <= b < 127 for b in data):
            yield f"{head} = {data.decode('ascii')!r}"
        elif len(data) > _BYTES_SHOWN:
            yield f"{head} = {len(data)} bytes {data[:_BYTES_SHOWN].hex()}..."
        else:
            yield f"{head} = {data.hex() or '(empty)'}"
    else:
        yield f"{head} = {value!r}"


def _fields(message: Any, depth: int) -> Iterator[str]:
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for item in values:
            yield from _value(field, item, depth)


def describe_message(message: Any, depth: int = 1) -> list[str]:
    """Every set field of a protobuf ``message``, one line each, ``#<number> <name>``."""
    return list(_fields(message, depth))


def describe(demo: Demo, now: float) -> list[str]:
    """The demo's printout: the message field by field, the signed bytes, the verdict."""
    message = schema.RoutableMessage()
    message.ParseFromString(demo.body)
    header = tlv_header(demo.din, demo.expires_at)
    lines = [
        f"RoutableMessage ({len(demo.body)} bytes), a {demo.kind.value} call for {demo.din}:",
        *describe_message(message),
        "",
        f"signed bytes = TLV header ({len(header)} bytes) + the envelope ({len(demo.envelope)} "
        "bytes), RSASSA-PKCS1-v1_5 / SHA-512:",
        f"  {header.hex()}",
        f"  signature type {header[2]} (RSA), domain {header[5]} (energy device), "
        f"personalization {demo.din!r}, expires_at {demo.expires_at} "
        f"({datetime.fromtimestamp(demo.expires_at, UTC):%Y-%m-%d %H:%M:%S} UTC), end ff",
        f"signer: key {fingerprint(demo.signer)}",
    ]
    verified = verify_request(demo.body, demo.din, {demo.signer}, now)
    event = ""
    if verified.event is not None:
        event = f", {verified.event.start:%H:%M:%S}-{verified.event.end:%H:%M:%S} UTC"
    lines.append(
        f"verified as the gateway would: {verified.kind.value}{event}, signature good, "
        f"{demo.expires_at - int(now)} s left"
    )
    lines.append(f"body (hex): {demo.body.hex()}")
    return lines


def send(channel: SignedChannel, demo: Demo, timeout: float) -> list[str]:
    """Send ``demo`` through ``channel``; the gateway's reply, field by field, and its meaning."""
    reply = channel.send(demo.body, timeout=timeout)
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(reply)
    except DecodeError:
        return [f"reply: {len(reply)} bytes, not a RoutableMessage"]
    lines = [f"reply RoutableMessage ({len(reply)} bytes):", *describe_message(message)]
    if message.HasField("signed_message_status"):
        fault = int(message.signed_message_status.signed_message_fault)
        if fault:
            lines.append(f"the gateway refused it: {fault_name(fault)}")
            return lines
    lines.append(f"the gateway answered: {parse_response(reply)}")
    return lines
