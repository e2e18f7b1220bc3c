"""Another poller for the same gateway, seen on the bus: which of the two gives way.

Two pollers on one gateway double its load and publish every reading twice; on one machine
the state folder's lock stops the second (:mod:`powerwall_bus.producers.poller.lock`), but
two machines, or two state folders, share nothing but the bus. So every poller listens to
the poller status messages of every gateway and, when one for its own gateway comes from
another run, the younger poller stops with one line saying why (exit status 2: starting it
again cannot help) and the elder keeps going, warning once.

A status this poller published itself is no rival, whatever run made it: after a crash
the durable outbox replays the earlier run's messages, statuses included, under that run's
id (the publisher remembers every run it publishes for). Only statuses made after this
poller started count at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from typing import Any

#: Status messages stamped this much before our start still count (clocks of two machines).
CLOCK_SLACK_S = 5.0


class Verdict(Enum):
    """What a status message means for this poller."""

    NONE = "no rival"  # ours, another gateway's, or an old one
    ELDER = "a younger poller runs too"  # we started first: keep going, warn
    YIELD = "an elder poller runs"  # it started first: stop


@dataclass(frozen=True)
class Me:
    """This poller: its run, its gateway (once known) and when it started (epoch s)."""

    run: str
    started: float
    din: str | None


def judge(me: Me, din: str, run: str, made_at: float, started: Any) -> Verdict:
    """The verdict on a status of gateway ``din`` from run ``run``, made at ``made_at``
    (epoch s), whose payload says it ``started`` (ISO time text, or anything else)."""
    if me.din is None or din != me.din or not run or run == me.run:
        return Verdict.NONE
    if made_at < me.started - CLOCK_SLACK_S:
        return Verdict.NONE  # from before we started: a replay, not a live poller
    theirs = _epoch(started)
    if theirs is None:
        return Verdict.ELDER  # cannot tell: the one that sees the other keeps going
    if (theirs, run) < (me.started, me.run):
        return Verdict.YIELD
    return Verdict.ELDER


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
