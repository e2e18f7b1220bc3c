"""The ``octopus.plan`` message: an account's whole dispatch plan and how fresh it is.

``pwbus octopus`` publishes one on every change and every ``octopus_energy.publish_every``
seconds, under ``octopus.<account>.plan`` (see :mod:`powerwall_bus.shared.contract`)::

    {"version": 1, "kind": "octopus.plan", "time": "2026-01-14T12:00:00.000Z",
     "account": "A-1234ABCD", "run": "9f...", "seq": 7,
     "payload": {"state": "ok", "since": "...Z", "retry_at": null, "source": "flex",
                 "device_state": "SMART_CONTROL_CAPABLE", "note": null,
                 "plan": {"device_id": "...", "fetched_at": "...Z", "dispatches": [
                     {"start": "...Z", "end": "...Z", "type": "SMART", "energy_kwh": 7.1}]}}}

``plan`` is the last plan fetched (null before the first); ``state`` says whether it is
current (``ok``) or why not (``unreachable``, ``rate_limited``, ``refused``: the API key,
``no_device``, ``error``), since when, and when the next attempt is due. A consumer
decides from ``plan.fetched_at`` how old a plan it is willing to act on. Nothing secret is
in a message: no key, no token, only the account number and the device id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from powerwall_bus.shared.contract import OCTOPUS_PLAN, routing_key
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.messages import (
    SCHEMA_VERSION,
    OutgoingMessage,
    RunSequence,
    iso_time,
    loads,
)
from powerwall_bus.shared.octopus.plan import DispatchPlan, parse_time

__all__ = ["STATES", "PlanMessage", "parse_plan_message", "plan_message"]

STATES = ("ok", "unreachable", "rate_limited", "refused", "no_device", "error")
SOURCES = ("flex", "legacy")
_SEPARATORS = (",", ":")


@dataclass(frozen=True)
class PlanMessage:
    """One ``octopus.plan`` message, parsed."""

    account: str
    time: datetime
    state: str
    since: datetime
    plan: DispatchPlan | None
    retry_at: datetime | None = None
    source: str | None = None
    device_state: str | None = None
    note: str | None = None
    run: str | None = None
    seq: int | None = None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_time(moment.timestamp())


def plan_message(message: PlanMessage, sequence: RunSequence) -> OutgoingMessage:
    """The message to publish (``message.run``/``seq`` are taken from ``sequence``)."""
    seq = sequence.next()
    document = {
        "version": SCHEMA_VERSION,
        "kind": OCTOPUS_PLAN,
        "time": _iso(message.time),
        "account": message.account,
        "run": sequence.run,
        "seq": seq,
        "payload": {
            "state": message.state,
            "since": _iso(message.since),
            "retry_at": _iso(message.retry_at),
            "source": message.source,
            "device_state": message.device_state,
            "note": message.note,
            "plan": None if message.plan is None else message.plan.to_payload(),
        },
    }
    epoch = message.time.timestamp()
    return OutgoingMessage(
        routing_key=routing_key(OCTOPUS_PLAN, message.account),
        body=json.dumps(document, separators=_SEPARATORS).encode(),
        message_id=f"{message.account}|{OCTOPUS_PLAN}|{sequence.run}|{seq}",
        timestamp=int(epoch),
        type=OCTOPUS_PLAN,
        run=sequence.run,
        seq=seq,
    )


def _text(document: dict[str, object], name: str, optional: bool = False) -> str | None:
    value = document.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise MalformedMessage(f"{name} is missing or not a string")
    return value


def parse_plan_message(body: bytes) -> PlanMessage:
    """Parse and check one ``octopus.plan`` body; raises MalformedMessage."""
    try:
        document = loads(body)
    except MalformedMessage:
        raise
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessage("body is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedMessage("body is not a JSON object")
    if document.get("version") != SCHEMA_VERSION or document.get("kind") != OCTOPUS_PLAN:
        raise MalformedMessage("not an octopus.plan message of version 1")
    payload = document.get("payload")
    if not isinstance(payload, dict):
        raise MalformedMessage("payload is missing or not an object")
    state = _text(payload, "state")
    if state not in STATES:
        raise MalformedMessage(f"state {state!r} is not one of {', '.join(STATES)}")
    source = _text(payload, "source", optional=True)
    if source is not None and source not in SOURCES:
        raise MalformedMessage(f"source {source!r} is not one of {', '.join(SOURCES)}")
    plan = payload.get("plan")
    if plan is not None and not isinstance(plan, dict):
        raise MalformedMessage("plan is not an object")
    retry = _text(payload, "retry_at", optional=True)
    seq = document.get("seq")
    return PlanMessage(
        account=str(_text(document, "account")),
        time=parse_time(document.get("time")),
        state=state,
        since=parse_time(payload.get("since")),
        plan=None if plan is None else DispatchPlan.from_payload(plan),
        retry_at=None if retry is None else parse_time(retry),
        source=source,
        device_state=_text(payload, "device_state", optional=True),
        note=_text(payload, "note", optional=True),
        run=_text(document, "run", optional=True),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )
