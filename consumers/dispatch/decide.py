"""The dispatcher's decision: what to tell the gateway now, from the plan and the gateway's word.

:func:`decide` is pure: the clock, the Octopus plan, the gateway's current manual backup event
(its answer to ``get_backup_events``, never a remembered one) and the settings go in; the
actions to send, each with the reason a dry run and the logs print, come out, together with a
small immutable :class:`Memory` the caller hands to the next call. Because the event comes from
the gateway, a restarted dispatcher never schedules twice: an event that already gives the
wanted hold is left alone.

The rules (the holds themselves come from :func:`~.holds.plan_holds`):

* Only the hold that covers *now* is acted on; a later one is scheduled when it starts. A new
  hold starts now (rounded up to the whole second), ends on its half hour, and lasts at least the
  gateway's 60 s; with less than that left nothing is scheduled.
* The gateway needs a cancel before a new event, so every Schedule is preceded by a Cancel of
  whatever event the gateway lists, even one that has ended.
* Hysteresis (``hysteresis_minutes``): a hold whose end is within that of the wanted end is left
  alone (also a hold about to end by itself is not cancelled); longer holds happen at once, but a
  hold is shortened or ended only once the plan has asked for it for that long (a plan that
  flickers for one poll does not toggle the battery). While the plan is *empty*, the wait is
  ``bridge_minutes`` instead (Octopus empties the plan while it re-plans a running session).
* No plan known (``plan=None``, nothing heard from Octopus yet; or a plan fetched longer ago
  than ``plan_max_age_minutes``) changes nothing: an unknown plan is not an empty one, and a
  hold on the gateway ends at its own end.
* A Max Backup we did not make (set in the Tesla app; told apart because it is not the event
  :attr:`Memory.ours` remembers, within :data:`CLOCK_SLACK`): with ``foreign_hold = keep`` it is
  never shortened or cancelled; a dispatch that needs longer replaces it with one hold covering
  both (never shortened below the hand-set end while it stays on the gateway; if the user
  cancels or changes it, that stands); a foreign event that starts after the wanted hold ends
  is left alone and the dispatch gets no hold. With ``replace`` every event counts as ours
  (Tesla-API's behaviour). After a restart without the saved memory, the dispatcher's own
  earlier hold counts as foreign: kept to its end, never double-scheduled.

The same rules, for users: ``docs/dispatch-decisions.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from powerwall_bus.consumers.dispatch.holds import (
    Hold,
    ceil_half_hour,
    charging_type,
    offpeak_windows,
    plan_holds,
)
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.max_backup import MIN_DURATION, BackupEvent
from powerwall_bus.shared.octopus.plan import DispatchPlan, parse_time
from powerwall_bus.shared.settings import DispatchSettings

__all__ = [
    "CLOCK_SLACK",
    "Action",
    "Cancel",
    "Decision",
    "Memory",
    "Schedule",
    "clock",
    "decide",
    "span",
]

#: How far the gateway's idea of an event may be from ours and still be the same event (the
#: gateway clock lags by about a second).
CLOCK_SLACK = timedelta(seconds=5)


@dataclass(frozen=True)
class Schedule:
    """Schedule Max Backup ``[start, end)`` (whole seconds, aware UTC, at least 60 s)."""

    start: datetime
    end: datetime
    reason: str

    def __post_init__(self) -> None:
        # A programming error, never the user's: decide() only makes valid ones.
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a scheduled hold needs aware times")
        if self.end - self.start < MIN_DURATION:
            raise ValueError("the gateway refuses a hold shorter than 60 s")
        if self.start.microsecond or self.end.microsecond:
            raise ValueError("a scheduled hold is whole seconds")

    @property
    def event(self) -> BackupEvent:
        return BackupEvent(self.start, self.end)

    @property
    def duration_seconds(self) -> int:
        """What the gateway's ``duration_seconds`` gets."""
        return int((self.end - self.start).total_seconds())


@dataclass(frozen=True)
class Cancel:
    """Cancel the manual backup event the gateway listed."""

    event: BackupEvent
    reason: str


Action = Schedule | Cancel


@dataclass(frozen=True)
class Memory:
    """What one decision hands to the next; never a belief about what the gateway holds."""

    #: The event we last scheduled, to tell it from a Max Backup set by hand.
    ours: BackupEvent | None = None
    #: Since when the plan has asked for less than the hold on the gateway (hysteresis/bridge).
    release_since: datetime | None = None
    #: The end of a hand-set Max Backup we folded into our hold: never shortened below it.
    keep_until: datetime | None = None

    def to_payload(self) -> dict[str, Any]:
        """JSON-able, for a shell that keeps it across restarts."""

        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(UTC).isoformat()

        ours = None if self.ours is None else [iso(self.ours.start), iso(self.ours.end)]
        return {
            "ours": ours,
            "release_since": iso(self.release_since),
            "keep_until": iso(self.keep_until),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Memory:
        def moment(value: Any) -> datetime | None:
            return None if value is None else parse_time(value)

        ours = payload.get("ours")
        if ours is not None and (not isinstance(ours, list | tuple) or len(ours) != 2):
            raise MalformedMessage("memory.ours must be [start, end] or null")
        return cls(
            None if ours is None else BackupEvent(parse_time(ours[0]), parse_time(ours[1])),
            moment(payload.get("release_since")),
            moment(payload.get("keep_until")),
        )


@dataclass(frozen=True)
class Decision:
    """The actions to send, in order, and what to remember for the next decision."""

    actions: tuple[Action, ...]
    memory: Memory
    #: One sentence: what the gateway should be doing now and why (also when nothing is sent).
    summary: str
    #: Every hold the plan asks for, for the dry run and the ``dispatch.result`` message.
    holds: tuple[Hold, ...] = ()
    #: When the answer can change without new input (a hold starts, a wait runs out).
    wake_at: datetime | None = None


def clock(moment: datetime) -> str:
    """``10:30`` or ``08:55:10`` (UTC), for reasons."""
    moment = moment.astimezone(UTC)
    return f"{moment:%H:%M:%S}" if moment.second else f"{moment:%H:%M}"


def span(start: datetime, end: datetime) -> str:
    """``10:10-11:00 UTC``."""
    return f"{clock(start)}-{clock(end)} UTC"


def _next_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _same(event: BackupEvent, other: BackupEvent | None) -> bool:
    return (
        other is not None
        and abs(event.start - other.start) <= CLOCK_SLACK
        and abs(event.end - other.end) <= CLOCK_SLACK
    )


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} min"


def _hold_reason(hold: Hold | None, keep_until: datetime | None, end: datetime) -> str:
    parts = []
    if hold is not None:
        kinds = "/".join(dict.fromkeys(charging_type(d.kind) for d in hold.dispatches))
        many = "es" if len(hold.dispatches) > 1 else ""
        slots = ", ".join(f"{clock(d.start)}-{clock(d.end)}" for d in hold.dispatches)
        parts.append(f"{kinds} dispatch{many} {slots} UTC as whole half hours")
        if hold.trimmed:
            parts.append("the part in the regular off-peak window left out")
    if keep_until is not None and keep_until >= end:
        parts.append(f"keeping the Max Backup set by hand until {clock(keep_until)} UTC")
    return "; ".join(parts)


@dataclass(frozen=True)
class _Situation:
    """Everything one decision looks at, worked out once."""

    now: datetime
    plan: DispatchPlan
    settings: DispatchSettings
    memory: Memory
    holds: tuple[Hold, ...]
    hold: Hold | None  # the hold covering now
    keep_until: datetime | None
    want: BackupEvent | None  # what the gateway should hold from now on
    why: str  # why it should

    @property
    def next_start(self) -> datetime | None:
        return next((h.start for h in self.holds if h.start > self.now), None)

    def decision(
        self, actions: tuple[Action, ...], memory: Memory, summary: str, wait: datetime | None
    ) -> Decision:
        wakes = [t for t in (self.next_start, wait) if t is not None]
        return Decision(actions, memory, summary, self.holds, min(wakes, default=None))

    def schedule(self, event: BackupEvent, why: str | None = None) -> Schedule:
        return Schedule(
            event.start, event.end, f"hold until {clock(event.end)} UTC: {why or self.why}"
        )


def decide(
    now: datetime,
    plan: DispatchPlan | None,
    current: BackupEvent | None,
    settings: DispatchSettings,
    memory: Memory | None = None,
) -> Decision:
    """What to send to the gateway now; ``current`` is the gateway's own answer (or None)."""
    if now.tzinfo is None:
        raise ValueError("decide() needs an aware time")
    now = now.astimezone(UTC)
    memory = memory or Memory()
    if plan is None:
        return Decision(
            (), _unknown(memory), "no plan from Octopus yet: the gateway is left as it is"
        )
    age = now - plan.fetched_at
    if age > settings.plan_max_age:
        summary = (
            f"the plan is {_minutes(age)} old (Octopus unreachable?): the gateway is left as it is"
        )
        return Decision((), _unknown(memory), summary)
    holds = plan_holds(plan, settings)
    hold = next((h for h in holds if h.covers(now)), None)
    start = _next_second(now)
    live = current if current is not None and current.end > now else None
    ours = live is not None and (settings.foreign_hold == "replace" or _same(live, memory.ours))
    # A hand-set end folded into our hold counts only while that hold is still there: once
    # the gateway holds nothing (or something else), the user has decided anew.
    kept = memory.keep_until if ours else None
    keep_until = kept if kept is not None and kept > start else None
    end = max((t for t in (hold.end if hold else None, keep_until) if t is not None), default=None)
    want = BackupEvent(start, end) if end is not None and end - start >= MIN_DURATION else None
    why = _hold_reason(hold, keep_until, end) if end is not None else ""
    here = _Situation(now, plan, settings, memory, holds, hold, keep_until, want, why)
    if live is None:
        return _nothing_held(here, current)
    return _ours_held(here, live) if ours else _foreign_held(here, live)


def _unknown(memory: Memory) -> Memory:
    # A wait for the plan to settle starts again once the plan is known again.
    return Memory(memory.ours, None, memory.keep_until)


def _nothing_held(here: _Situation, ended: BackupEvent | None) -> Decision:
    memory = Memory(keep_until=here.keep_until)
    if here.want is None:
        return here.decision((), memory, _idle(here), None)
    actions: list[Action] = []
    if ended is not None:
        actions.append(
            Cancel(ended, "the gateway still lists an ended hold; it needs a cancel first")
        )
    actions.append(here.schedule(here.want))
    summary = f"holding until {clock(here.want.end)} UTC"
    return here.decision(tuple(actions), Memory(here.want, None, here.keep_until), summary, None)


def _idle(here: _Situation) -> str:
    """Why no hold is wanted now."""
    if not here.plan.dispatches:
        return "the plan is empty: no hold"
    if here.next_start is not None:
        upcoming = next(h for h in here.holds if h.start > here.now)
        return f"no hold now; the next is {span(upcoming.start, upcoming.end)}"
    if here.hold is not None:  # less than the gateway's 60 s left of it
        return f"the hold {span(here.hold.start, here.hold.end)} has under 60 s left: no hold"
    settings = here.settings
    first, last = settings.offpeak_window
    offpeak = (
        f"{first:%H:%M}-{last:%H:%M} {settings.offpeak_timezone} is off-peak anyway, "
        if settings.skip_offpeak
        else ""
    )
    return (
        f"no dispatch needs a hold now (only {'/'.join(settings.types)} counts; {offpeak}"
        f"runs under {settings.min_dispatch_minutes:g} min are ignored)"
    )


def _foreign_held(here: _Situation, live: BackupEvent) -> Decision:
    """A Max Backup we did not make, with ``foreign_hold = keep``."""
    memory = Memory(keep_until=here.keep_until)
    held = f"a Max Backup we did not make holds {span(live.start, live.end)}"
    want = here.want
    if want is None:
        return here.decision((), memory, f"{held}: left alone", None)
    tolerance = here.settings.hysteresis
    if live.start <= here.now + CLOCK_SLACK and live.end >= want.end - tolerance:
        return here.decision((), memory, f"{held}, which covers the wanted hold: left alone", None)
    if live.start > want.end:
        summary = f"{held}, after the wanted hold: left alone, so this dispatch gets no hold"
        return here.decision((), memory, summary, None)
    merged = BackupEvent(want.start, max(want.end, live.end))
    keep_until = max(t for t in (live.end, here.keep_until) if t is not None)
    cancel = Cancel(live, f"{held}; replaced by one hold covering it and the dispatch")
    why = f"{here.why}; covering the Max Backup set by hand until {clock(live.end)} UTC"
    actions = (cancel, here.schedule(merged, why))
    summary = f"holding until {clock(merged.end)} UTC"
    return here.decision(actions, Memory(merged, None, keep_until), summary, None)


def _ours_held(here: _Situation, live: BackupEvent) -> Decision:
    """Our own hold (or any, with ``foreign_hold = replace``): follow the plan, calmly."""
    tolerance = here.settings.hysteresis
    want = here.want
    started = live.start <= here.now + CLOCK_SLACK
    memory = Memory(live, None, here.keep_until)
    if want is None:
        if live.end - here.now <= tolerance:
            summary = f"the hold ends by itself at {clock(live.end)} UTC: left to run out"
            return here.decision((), memory, summary, None)
        return _release(here, live, None)
    if started and abs(live.end - want.end) <= tolerance:
        summary = f"holding until {clock(live.end)} UTC, as wanted ({here.why})"
        return here.decision((), memory, summary, None)
    if started and live.end > want.end:
        return _release(here, live, want)
    cancel = Cancel(live, f"the hold until {clock(live.end)} UTC makes way for a longer one")
    summary = f"holding until {clock(want.end)} UTC"
    return here.decision(
        (cancel, here.schedule(want)), Memory(want, None, here.keep_until), summary, None
    )


def _release(here: _Situation, live: BackupEvent, shorter: BackupEvent | None) -> Decision:
    """End or shorten our hold, once the plan has asked for it long enough.

    Never inside the half hour it is running in: Octopus bills whole half hours, so the rest
    of that half hour is as cheap as its start (and Octopus drops a dispatch from the plan
    once it has ended, which must not cut that half hour short).
    """
    end_of_half_hour = ceil_half_hour(here.now)
    # Only a hold we made for a dispatch, running now, outside the regular off-peak window
    # (cheap anyway) keeps its half hour.
    running = (
        live.start <= here.now + CLOCK_SLACK
        and _same(live, here.memory.ours)
        and not offpeak_windows(here.now, end_of_half_hour, here.settings)
    )
    if running and live.end <= end_of_half_hour:
        summary = (
            f"the hold ends with this half hour at {clock(live.end)} UTC (whole half hours): "
            "left to run out"
        )
        return here.decision((), Memory(live, None, here.keep_until), summary, None)
    empty = not here.plan.dispatches
    settings = here.settings
    wait = settings.bridge if empty else settings.hysteresis
    since = here.memory.release_since or here.now
    if empty:
        asked = "is empty"
    elif shorter is None:
        asked = "wants no hold now"
    else:
        asked = f"wants the hold to end at {clock(shorter.end)} UTC"
    if here.now - since < wait:
        rule = "bridge" if empty else "hysteresis"
        summary = (
            f"the plan {asked} since {clock(since)} UTC; keeping the hold until "
            f"{clock(live.end)} UTC for the {_minutes(wait)} {rule}"
        )
        memory = Memory(live, since, here.keep_until)
        return here.decision((), memory, summary, since + wait)
    for_how_long = f"for {_minutes(here.now - since)}"
    why = None
    if running and (shorter is None or shorter.end < end_of_half_hour):
        rest = BackupEvent(_next_second(here.now), end_of_half_hour)
        if rest.duration >= MIN_DURATION:
            shorter = rest
            why = f"the rest of the half hour until {clock(rest.end)} UTC (whole half hours)"
    if shorter is None:
        cancel = Cancel(live, f"the plan {asked} ({for_how_long}): hold released")
        return here.decision((cancel,), Memory(None, None, here.keep_until), cancel.reason, None)
    cancel = Cancel(live, f"the plan {asked} ({for_how_long}): cancel before the shorter hold")
    summary = f"holding until {clock(shorter.end)} UTC"
    actions = (cancel, here.schedule(shorter, why))
    return here.decision(actions, Memory(shorter, None, here.keep_until), summary, None)
