"""The ``dispatch.result`` message: what was decided, what was sent, what the gateway says (pure).

One message per decision worth telling (see ``docs/messages.md``): the plan it was decided
on, the gateway's Max Backup before and after, every action with its reason and outcome.
Nothing secret goes in: no key, no signed bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from powerwall_bus.consumers.dispatch.decide import Action, Cancel, Decision, Schedule
from powerwall_bus.shared.contract import DISPATCH_RESULT, routing_key
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.messages import SCHEMA_VERSION, OutgoingMessage, RunSequence, iso_time
from powerwall_bus.shared.octopus.message import PlanMessage

__all__ = ["Done", "Report", "result_message"]

_SEPARATORS = (",", ":")
_MAX_DETAIL = 300


@dataclass(frozen=True)
class Done:
    """One action and how it went: ``done``, ``refused``, ``failed`` or ``not_sent``."""

    action: Action
    outcome: str
    detail: str | None = None


@dataclass(frozen=True)
class Report:
    """Everything one ``dispatch.result`` says."""

    time: datetime
    gateway: str
    channel: str
    trigger: str  # start, plan, timer
    plan: PlanMessage | None
    before: BackupEvent | None
    decision: Decision
    done: tuple[Done, ...] = ()
    after: BackupEvent | None = None
    error: str | None = None


def _iso(moment: datetime) -> str:
    return iso_time(moment.timestamp())


def _event(event: BackupEvent | None) -> dict[str, str] | None:
    if event is None:
        return None
    return {"start": _iso(event.start), "end": _iso(event.end)}


def _action(done: Done) -> dict[str, object]:
    action = done.action
    if isinstance(action, Schedule):
        name, start, end = "schedule", action.start, action.end
    elif isinstance(action, Cancel):
        name, start, end = "cancel", action.event.start, action.event.end
    else:  # pragma: no cover - Action is a closed union
        raise TypeError(type(action).__name__)
    detail = None if done.detail is None else " ".join(done.detail.split())[:_MAX_DETAIL]
    return {
        "action": name,
        "start": _iso(start),
        "end": _iso(end),
        "reason": action.reason,
        "outcome": done.outcome,
        "detail": detail,
    }


def _plan(message: PlanMessage | None) -> dict[str, object] | None:
    if message is None:
        return None
    plan = message.plan
    return {
        "account": message.account,
        "state": message.state,
        "fetched_at": None if plan is None else _iso(plan.fetched_at),
        "dispatches": 0 if plan is None else len(plan.dispatches),
    }


def result_message(report: Report, sequence: RunSequence) -> OutgoingMessage:
    """The ``dispatch.<DIN>.result`` message of ``report``."""
    seq = sequence.next()
    decision = report.decision
    document = {
        "version": SCHEMA_VERSION,
        "kind": DISPATCH_RESULT,
        "time": _iso(report.time),
        "gateway": report.gateway,
        "run": sequence.run,
        "seq": seq,
        "payload": {
            "channel": report.channel,
            "trigger": report.trigger,
            "plan": _plan(report.plan),
            "before": _event(report.before),
            "summary": decision.summary,
            "holds": [{"start": _iso(h.start), "end": _iso(h.end)} for h in decision.holds],
            "actions": [_action(done) for done in report.done],
            "after": _event(report.after),
            "error": report.error,
            "wake_at": None if decision.wake_at is None else _iso(decision.wake_at),
        },
    }
    return OutgoingMessage(
        routing_key=routing_key(DISPATCH_RESULT, report.gateway),
        body=json.dumps(document, separators=_SEPARATORS).encode(),
        message_id=f"{report.gateway}|{DISPATCH_RESULT}|{sequence.run}|{seq}",
        timestamp=int(report.time.timestamp()),
        type=DISPATCH_RESULT,
        run=sequence.run,
        seq=seq,
    )
