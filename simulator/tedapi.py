"""The simulated gateway's signed TEDAPI (``POST /tedapi/v1r``): paired keys and Max Backup.

Paired keys come from ``--paired-key``/``/_sim/pair`` (the cloud registration and switch
toggle of a real site), and a verified key can list them, add another (by trusted
signature, verified at once) and remove any, signed, as on a real gateway.

A pure core behind the HTTPS shell: :meth:`SignedCommands.handle` takes the request body and
returns the answer body. The checks are the shared gateway-side rules
(:func:`~powerwall_bus.shared.tedapi.responder.verify_request`), answered as a gateway does:
HTTP 200 whatever happens, a refused signature as ``signed_message_status {ERROR, fault}``
(unknown key 3, invalid signature 5, wrong DIN 12, expired 17, undecodable 10), a paired but
unverified key with the "not verified" text.

It keeps at most one manual backup event, with the rules the clients report of the real
gateway: at least 60 s, and a new one only after the old one was cancelled (or has ended).
Those refusals come back as an ``error_response`` with a ``google.rpc`` code (3
INVALID_ARGUMENT, 9 FAILED_PRECONDITION): no recorded gateway refusal exists, so the codes
are ours. An event whose end has passed is dropped when next looked at, so it is neither
listed nor in the way of a new one. The event acts on the site model (the Powerwalls hold
their charge), in the model's simulated time; with speed 1 and no start offset (the
default) that is the clock the client signs with.

The expiry is checked against ``clock`` (wall time): what a paired client signs with.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import DecodeError

from powerwall_bus.shared.errors import TedapiFault, TedapiKeyError
from powerwall_bus.shared.max_backup import MIN_DURATION, BackupEvent
from powerwall_bus.shared.tedapi import responder, schema
from powerwall_bus.shared.tedapi.clients import AuthorizedClient, ClientKind
from powerwall_bus.shared.tedapi.commands import Kind
from powerwall_bus.shared.tedapi.keys import fingerprint, public_key_from_der
from powerwall_bus.simulator.endpoints import SimulatedGateway

_LOGGER = logging.getLogger(__name__)

#: google.rpc codes of the refusals (ours: no recorded gateway refusal exists).
INVALID_ARGUMENT = 3
NOT_FOUND = 5
FAILED_PRECONDITION = 9
AUTHORIZED_STATE_PENDING = 1
AUTHORIZED_STATE_VERIFIED = 3


@dataclass(frozen=True)
class PairedKey:
    """A key the simulated gateway knows; ``verified`` False until the switch toggle."""

    der: bytes
    verified: bool
    description: str = ""
    added: float = 0.0  # Unix seconds

    def as_dict(self, *, detail: bool = False) -> dict[str, object]:
        """JSON-friendly view: the fingerprint; with ``detail`` also the public key (base64
        DER: public, but only a control client asks for it), description and pairing time."""
        view: dict[str, object] = {"fingerprint": fingerprint(self.der), "verified": self.verified}
        if detail:
            view["public_key"] = base64.b64encode(self.der).decode("ascii")
            view["description"] = self.description
            view["added"] = self.added
        return view

    def record(self) -> AuthorizedClient:
        """The key as the gateway lists it."""
        return AuthorizedClient(
            public_key=self.der,
            description=self.description,
            state=AUTHORIZED_STATE_VERIFIED if self.verified else AUTHORIZED_STATE_PENDING,
            added=datetime.fromtimestamp(int(self.added), UTC),
        )


class SignedCommands:
    """Paired keys and the Max Backup calls of one simulated gateway."""

    def __init__(
        self,
        gateway: SimulatedGateway,
        paired: Iterable[bytes] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gateway = gateway
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[bytes, PairedKey] = {}
        for der in paired:
            self.pair(der)

    # ------------------------------------------------------------------ pairing

    def pair(self, der: bytes, *, verified: bool = True, description: str = "") -> PairedKey:
        """Accept ``der`` (DER PKCS#1) for signed commands, or mark it pending."""
        key = PairedKey(der, verified, description or "simulator pairing", self._clock())
        with self._lock:
            self._keys[der] = key
        _LOGGER.info(
            "paired key %s (%s)",
            key.as_dict()["fingerprint"],
            "verified" if verified else "pending",
        )
        return key

    def unpair(self, der: bytes) -> bool:
        """Forget ``der``; False when it was not paired."""
        with self._lock:
            removed = self._keys.pop(der, None)
        if removed is not None:
            _LOGGER.info("removed paired key %s", fingerprint(der))
        return removed is not None

    def paired(self) -> list[PairedKey]:
        """Every key known, in pairing order."""
        with self._lock:
            return list(self._keys.values())

    def reset(self) -> None:
        """Forget every key and cancel the manual backup event (tests, ``/_sim/reset``)."""
        with self._lock:
            self._keys.clear()
        self._gateway.set_manual_backup(None)

    # ------------------------------------------------------------------ requests

    def current_event(self, now: float) -> BackupEvent | None:
        """The manual backup event, dropped once its end has passed."""
        event = self._gateway.manual_backup
        if event is not None and event.end.timestamp() <= now:
            self._gateway.set_manual_backup(None)
            return None
        return event

    def handle(self, body: bytes) -> bytes:
        """Answer one ``POST /tedapi/v1r`` body."""
        now = self._clock()
        with self._lock:
            verified = {k.der for k in self._keys.values() if k.verified}
            pending = {k.der for k in self._keys.values() if not k.verified}
        request_uuid = _request_uuid(body)
        try:
            signed = responder.verify_signed(
                body, self._gateway.din, verified, now, pending=pending
            )
            call = responder.client_call(signed.envelope)
            if call is not None:
                return self._clients(call, request_uuid)
            kind, event = responder.backup_call(signed.envelope)
        except TedapiFault as fault:
            _LOGGER.info("refused a signed message: %s", fault.name)
            return responder.fault_reply(fault.fault, request_uuid)
        except responder.NotVerified:
            _LOGGER.info("refused a signed message: the key is not verified")
            return responder.not_verified_reply(request_uuid)
        return self._backup(kind, event, request_uuid, now)

    def _clients(self, call: responder.ClientCall, uuid: bytes) -> bytes:
        din = self._gateway.din
        if call.kind is ClientKind.LIST:
            records = [key.record() for key in self.paired()]
            return responder.clients_reply(din, records, False, uuid)
        if call.kind is ClientKind.REMOVE:
            if not self.unpair(call.public_key):
                return responder.error_reply(din, NOT_FOUND, "no such authorized client", uuid)
            return responder.client_removed_reply(din, uuid)
        try:
            public_key_from_der(call.public_key)
        except TedapiKeyError:
            return responder.error_reply(
                din, INVALID_ARGUMENT, "public_key is not a DER PKCS#1 RSA key", uuid
            )
        added = self.pair(call.public_key, description=call.description)
        return responder.client_added_reply(din, added.record(), uuid)

    def _backup(self, kind: Kind, event: BackupEvent | None, uuid: bytes, now: float) -> bytes:
        din = self._gateway.din
        current = self.current_event(now)
        if kind is Kind.LIST:
            return responder.backup_events_reply(din, current, uuid)
        if kind is Kind.CANCEL:
            if current is not None:
                self._gateway.set_manual_backup(None)
                _LOGGER.info("manual backup event cancelled")
            return responder.acknowledgement_reply(din, Kind.CANCEL, uuid)
        assert event is not None  # a schedule request always carries its event
        if event.duration < MIN_DURATION:
            return responder.error_reply(
                din, INVALID_ARGUMENT, "manual backup event must last at least 60 s", uuid
            )
        if event.end.timestamp() <= now:
            return responder.error_reply(
                din, INVALID_ARGUMENT, "manual backup event ends in the past", uuid
            )
        if current is not None:
            return responder.error_reply(
                din,
                FAILED_PRECONDITION,
                "a manual backup event is already scheduled; cancel it first",
                uuid,
            )
        self._gateway.set_manual_backup(event)
        _LOGGER.info(
            "manual backup event scheduled %s to %s",
            event.start.isoformat(),
            event.end.isoformat(),
        )
        return responder.acknowledgement_reply(din, Kind.SCHEDULE, uuid)


def _request_uuid(body: bytes) -> bytes:
    """The request's ``uuid``, to echo as ``request_uuid`` even in a refusal (best effort)."""
    message = schema.RoutableMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        return b""
    return bytes(message.uuid)
