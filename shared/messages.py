"""The versioned message contract: what the poller publishes and how consumers read it.

Two families share the exchange:

* **Tesla-API compatible** (routing key ``MeterStream``): exactly
  ``{"timestamp": <epoch s, float>, "state_of_energy": <raw %>, "readings": <aggregates>}``,
  so the Tesla-API example consumers run unchanged against our poller.
* **Ours** (``powerwall.*``), one envelope for every kind::

      {"version": 1, "kind": "meters", "time": "2026-11-21T13:54:04.123Z",
       "gateway": "1232100-00-E--TG1234567890AB", "endpoint": "/api/meters/aggregates",
       "payload": {...the gateway JSON as received...}}

  The kind and the routing key of a reading come from the contract table
  (:mod:`shared.contract`). Vitals carry the raw protobuf as base64 in ``payload``
  (``"payload_encoding": "base64"``) and pyPowerwall's decoded dict in ``decoded``. The
  poller status carries ``endpoint: null``.

Every message has content type ``application/json``, persistent delivery, a ``message_id``
derived from gateway + endpoint + reading time (a redelivery or resync answer carries the
same id, so duplicates are recognisable), a timestamp, ``app_id`` and ``type`` (= kind).
Its headers name the gateway it is about (``x-pwbus-gateway``: the DIN, and
``x-pwbus-gateway-name`` when the poller has a name), so a consumer can tell gateways apart
without reading bodies, also in a resync answer and on ``MeterStream``, whose body has no
room for it.

Order. Every message also carries the poller's **run** (a random id drawn when the poller
process starts) and its **seq** (a counter of that run, one step per message made), in the
envelope (``run``, ``seq``) and in the headers (``x-pwbus-run``, ``x-pwbus-seq``; the only
place ``MeterStream`` has room for them). Within a run, a higher ``seq`` is a later message
whatever the clocks say: consumers order by it (:mod:`~powerwall_bus.shared.ordering`), never
by the reading time, which a poller's clock stepping back (or a forged message) can move.

Consumers parse with :func:`parse_envelope` / :func:`parse_meter_stream` and never look
into raw gateway JSON beyond the payload of the kind they subscribed to. Both refuse a body
with a number JSON cannot carry (``NaN``, ``Infinity``, or one too large for a float), which
Python's ``json`` would otherwise accept: :class:`NonFiniteNumber`.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from powerwall_bus.shared.contract import (
    METER_STREAM,
    POLLER_STATUS,
    kind_for_path,
    kind_of,
    routing_key,
)
from powerwall_bus.shared.errors import MalformedMessage

_orjson: Any
try:  # the optional fast JSON parser (see loads)
    import orjson as _orjson
except ImportError:  # pragma: no cover - installed with the fast extra
    _orjson = None

__all__ = [
    "APP_ID",
    "CONTENT_TYPE",
    "GATEWAY_HEADER",
    "GATEWAY_NAME_HEADER",
    "RUN_HEADER",
    "SCHEMA_VERSION",
    "SEQ_HEADER",
    "Envelope",
    "MeterStream",
    "NonFiniteNumber",
    "OutgoingMessage",
    "Reading",
    "RunSequence",
    "iso_time",
    "kind_of",
    "meter_stream_message",
    "parse_envelope",
    "parse_meter_stream",
    "poller_status_message",
    "reading_message",
]

SCHEMA_VERSION = 1
APP_ID = "pwbus-poller"
CONTENT_TYPE = "application/json"
#: AMQP header: the DIN of the gateway a message is about (as the envelope's ``gateway``).
GATEWAY_HEADER = "x-pwbus-gateway"
#: AMQP header: the poller's name for its gateway (``gateway.name``), when it has one.
GATEWAY_NAME_HEADER = "x-pwbus-gateway-name"
#: AMQP header: the poller run that made a message (as the envelope's ``run``).
RUN_HEADER = "x-pwbus-run"
#: AMQP header: the message's position in its run (as the envelope's ``seq``).
SEQ_HEADER = "x-pwbus-seq"

_SEPARATORS = (",", ":")


@dataclass(frozen=True)
class Reading:
    """One gateway reading, as the poller took it."""

    endpoint: str
    time: float  # epoch seconds (UTC) when the answer arrived
    gateway: str  # DIN
    payload: Any  # parsed JSON, or bytes for a protobuf body
    decoded: Any = None


@dataclass(frozen=True)
class OutgoingMessage:
    """A serialised message with the AMQP properties the publisher must set."""

    routing_key: str
    body: bytes
    message_id: str
    timestamp: int
    type: str
    gateway: str = ""  # the DIN; "" sends no gateway header (not a poller's message)
    gateway_name: str = ""  # the poller's gateway.name; "" sends no name header
    run: str = ""  # the poller run that made it; "" sends no order headers
    seq: int = 0  # its position in that run

    @property
    def headers(self) -> dict[str, Any]:
        """AMQP headers: the schema version, for consumers that route on it, the gateway's
        identity, for consumers that follow one gateway of several, and the message's
        place in its poller run, for consumers that keep the latest of a kind."""
        headers: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        if self.gateway:
            headers[GATEWAY_HEADER] = self.gateway
        if self.gateway_name:
            headers[GATEWAY_NAME_HEADER] = self.gateway_name
        if self.run:
            headers[RUN_HEADER] = self.run
            headers[SEQ_HEADER] = self.seq
        return headers


class RunSequence:
    """One poller run's order: a random run id and a counter, one step per message made.

    Messages are numbered when they are made (in the reader, in reading order), not when
    they are published, so a message sent again after a lost confirm or in a resync answer
    keeps its place. One process-wide sequence (:data:`PROCESS_RUN`) serves every message
    of a process; a higher ``seq`` of the same ``run`` is always the later message.
    """

    def __init__(self, run: str | None = None) -> None:
        self.run = run or secrets.token_hex(8)
        self._counter = itertools.count(1)  # next() on a count is atomic under the GIL

    def next(self) -> int:
        """The next position."""
        return next(self._counter)


#: The sequence of this process's messages (one poller process is one run).
PROCESS_RUN = RunSequence()


@dataclass(frozen=True)
class Envelope:
    """A parsed message of our contract."""

    version: int
    kind: str
    time: dt.datetime
    gateway: str
    endpoint: str | None
    payload: Any
    decoded: Any = None
    run: str | None = None  # the poller run that made it (absent before this field existed)
    seq: int | None = None  # its position in that run
    #: The whole parsed body, so a consumer that also checks it against the JSON schema
    #: (the writer) does not parse the body twice; not part of the message's identity.
    document: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def epoch(self) -> float:
        """The reading time as epoch seconds."""
        return self.time.timestamp()


@dataclass(frozen=True)
class MeterStream:
    """A parsed Tesla-API ``MeterStream`` message."""

    timestamp: float
    state_of_energy: float
    readings: dict[str, Any]


def iso_time(epoch: float) -> str:
    """UTC, millisecond precision, ``Z`` suffix."""
    millis = int(epoch * 1000)
    moment = dt.datetime.fromtimestamp(millis // 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def _message_id(gateway: str, what: str, epoch: float) -> str:
    # Whole milliseconds, truncated like iso_time, so the id and the time always agree.
    return f"{gateway}|{what}|{int(epoch * 1000)}"


def reading_message(
    reading: Reading, name: str = "", sequence: RunSequence | None = None
) -> OutgoingMessage:
    """The envelope message for one reading (``name``: the poller's name for its gateway;
    ``sequence``: the run it is numbered in, this process's by default)."""
    sequence = sequence or PROCESS_RUN
    seq = sequence.next()
    kind = kind_for_path(reading.endpoint)
    document: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "kind": kind,
        "time": iso_time(reading.time),
        "gateway": reading.gateway,
        "endpoint": reading.endpoint,
        "run": sequence.run,
        "seq": seq,
    }
    if isinstance(reading.payload, bytes | bytearray):
        document["payload"] = base64.b64encode(reading.payload).decode("ascii")
        document["payload_encoding"] = "base64"
    else:
        document["payload"] = reading.payload
    if reading.decoded is not None:
        document["decoded"] = reading.decoded
    return OutgoingMessage(
        routing_key=routing_key(kind, reading.gateway),
        body=json.dumps(document, separators=_SEPARATORS).encode(),
        message_id=_message_id(reading.gateway, reading.endpoint, reading.time),
        timestamp=int(reading.time),
        type=kind,
        gateway=reading.gateway,
        gateway_name=name,
        run=sequence.run,
        seq=seq,
    )


def meter_stream_message(
    epoch: float,
    state_of_energy: float,
    aggregates: dict[str, Any],
    gateway: str,
    name: str = "",
    sequence: RunSequence | None = None,
) -> OutgoingMessage:
    """The Tesla-API compatible message: exactly timestamp, state_of_energy, readings (the
    gateway and the run are in the headers only: the body is Tesla-API's)."""
    sequence = sequence or PROCESS_RUN
    body = {"timestamp": epoch, "state_of_energy": state_of_energy, "readings": aggregates}
    return OutgoingMessage(
        routing_key=routing_key(METER_STREAM, gateway),
        body=json.dumps(body, separators=_SEPARATORS).encode(),
        message_id=_message_id(gateway, METER_STREAM, epoch),
        timestamp=int(epoch),
        type=METER_STREAM,
        gateway=gateway,
        gateway_name=name,
        run=sequence.run,
        seq=sequence.next(),
    )


def poller_status_message(
    epoch: float,
    gateway: str,
    status: dict[str, Any],
    name: str = "",
    sequence: RunSequence | None = None,
) -> OutgoingMessage:
    """The poller's health report (kind ``poller.status``)."""
    sequence = sequence or PROCESS_RUN
    seq = sequence.next()
    kind = POLLER_STATUS
    document = {
        "version": SCHEMA_VERSION,
        "kind": kind,
        "time": iso_time(epoch),
        "gateway": gateway,
        "endpoint": None,
        "run": sequence.run,
        "seq": seq,
        "payload": status,
    }
    return OutgoingMessage(
        routing_key=routing_key(kind, gateway),
        body=json.dumps(document, separators=_SEPARATORS).encode(),
        message_id=_message_id(gateway, kind, epoch),
        timestamp=int(epoch),
        type=kind,
        gateway=gateway,
        gateway_name=name,
        run=sequence.run,
        seq=seq,
    )


class NonFiniteNumber(MalformedMessage):
    """A body with ``NaN``, ``Infinity`` or a number beyond a float's range: not JSON (RFC
    8259 has no such numbers), and a consumer that stored or served it would write invalid
    JSON or poison sums."""


def _refuse_constant(name: str) -> float:
    raise NonFiniteNumber(f"body has the non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"body has a number beyond a float's range ({text[:20]})")
    return value


def loads(body: bytes | str) -> Any:
    """``json.loads`` refusing non-finite numbers (:class:`NonFiniteNumber`), which the
    standard parser accepts (``NaN``, ``Infinity``, ``1e999``).

    With ``orjson`` installed (the ``fast`` extra) a body goes to it first: about four
    times faster (the writer parses thousands of messages a second), and it refuses every
    non-finite number itself. Whatever it refuses is parsed again by the standard parser,
    which has the last word and the precise error, so the two differ only in one thing:
    orjson reads an integer beyond 64 bits as a float.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        document = loads(body)
    except NonFiniteNumber:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"body is not JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise MalformedMessage("body is not a JSON object")
    return document


def parse_envelope(body: bytes) -> Envelope:
    """Parse and check one message of our contract; raises MalformedMessage."""
    document = _load_object(body)
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedMessage("version is missing or not an integer")
    if version > SCHEMA_VERSION:
        raise MalformedMessage(f"version {version} is newer than this program understands")
    if version < 1:
        raise MalformedMessage(f"version {version} is not a valid version")
    for name in ("kind", "time", "gateway"):
        if not isinstance(document.get(name), str):
            raise MalformedMessage(f"{name} is missing or not a string")
    endpoint = document.get("endpoint")
    if endpoint is not None and not isinstance(endpoint, str):
        raise MalformedMessage("endpoint is not a string")
    if "payload" not in document:
        raise MalformedMessage("payload is missing")
    run, seq = document.get("run"), document.get("seq")
    if run is not None and not (isinstance(run, str) and 0 < len(run) <= 64):
        raise MalformedMessage("run is not a string of 1 to 64 characters")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise MalformedMessage("seq is not a non-negative integer")
    try:
        moment = dt.datetime.fromisoformat(document["time"].replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage("time is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise MalformedMessage("time has no time zone")
    payload = document["payload"]
    encoding = document.get("payload_encoding")
    if encoding not in (None, "base64"):
        raise MalformedMessage(f"payload_encoding {encoding!r} is not supported")
    if encoding == "base64":
        if not isinstance(payload, str):
            raise MalformedMessage("a base64 payload must be a string")
        try:
            payload = base64.b64decode(payload, validate=True)
        except ValueError:
            raise MalformedMessage("payload is not valid base64") from None
    return Envelope(
        version=version,
        kind=document["kind"],
        time=moment,
        gateway=document["gateway"],
        endpoint=endpoint,
        payload=payload,
        decoded=document.get("decoded"),
        run=run,
        seq=seq,
        document=document,
    )


def parse_meter_stream(body: bytes) -> MeterStream:
    """Parse a Tesla-API ``MeterStream`` body; raises MalformedMessage."""
    document = _load_object(body)
    timestamp = document.get("timestamp")
    soe = document.get("state_of_energy")
    readings = document.get("readings")
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        raise MalformedMessage("timestamp is missing or not a number")
    if not isinstance(soe, int | float) or isinstance(soe, bool):
        raise MalformedMessage("state_of_energy is missing or not a number")
    if not isinstance(readings, dict):
        raise MalformedMessage("readings is missing or not an object")
    return MeterStream(float(timestamp), float(soe), readings)
