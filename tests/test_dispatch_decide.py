"""The dispatcher's pure decision core: table-driven cases, scenarios over time, properties.

Every case is one call of :func:`decide` with a plan in the facts file's shapes (unaligned
seconds, tiny slots, BOOST, the off-peak window, both DST nights, last-minute changes, an empty
plan while Octopus re-plans) and the gateway's current event; the expected actions are written
out as text. The scenarios drive a simulated gateway (cancel before a new event, as the real one
needs) through a sequence of polls; the properties check the invariants over random plans.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerwall_bus.consumers.dispatch.decide import (
    CLOCK_SLACK,
    Action,
    Cancel,
    Decision,
    Memory,
    Schedule,
    decide,
)
from powerwall_bus.consumers.dispatch.dryrun import decision_lines, duration_text
from powerwall_bus.consumers.dispatch.holds import (
    ceil_half_hour,
    charging_type,
    floor_half_hour,
    offpeak_windows,
    plan_holds,
)
from powerwall_bus.shared.errors import ConfigError, MalformedMessage
from powerwall_bus.shared.max_backup import MIN_DURATION, BackupEvent
from powerwall_bus.shared.octopus.plan import DispatchPlan, PlannedDispatch
from powerwall_bus.shared.settings import DispatchSettings, Sources, load
from tests.support.octopus_plans import EXPECTED_HOLDS, RESPONSES, plan_from_response

DAY = "2026-03-10"  # a GMT day


def t(text: str, day: str = DAY) -> datetime:
    """``10:15`` on ``day``, ``00:30+1`` the day after, or a full ``2026-03-29 04:30``: UTC."""
    if text[:4].isdigit() and text[4:5] == "-":
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    clock_text, _, later = text.partition("+")
    moment = datetime.fromisoformat(f"{day} {clock_text}").replace(tzinfo=UTC)
    return moment + timedelta(days=int(later or 0))


def show(moment: datetime, day: str = DAY) -> str:
    """The inverse of :func:`t`, for readable expectations."""
    text = f"{moment:%H:%M}" + (f":{moment:%S}" if moment.second else "")
    later = (moment.date() - datetime.fromisoformat(day).date()).days
    return text + (f"+{later}" if later else "")


def described(actions: Sequence[Action], day: str = DAY) -> str:
    """``cancel 10:15-11:00; schedule 10:20-11:30``."""
    return "; ".join(
        f"{'schedule' if isinstance(a, Schedule) else 'cancel'} "
        f"{show(a.event.start, day)}-{show(a.event.end, day)}"
        for a in actions
    )


def plan(text: str, day: str = DAY, fetched: str = "00:00") -> DispatchPlan:
    """``10:00-10:30, 10:30-12:00 BOOST`` as a plan (SMART unless a type is given)."""
    dispatches = []
    for slot in filter(None, (part.strip() for part in text.split(","))):
        span_text, _, kind = slot.partition(" ")
        start, end = span_text.split("-")
        dispatches.append(PlannedDispatch(t(start, day), t(end, day), kind or "SMART", 1.0))
    return DispatchPlan("device-1", t(fetched, day), tuple(dispatches))


def event(start: str, end: str, day: str = DAY) -> BackupEvent:
    return BackupEvent(t(start, day), t(end, day))


@dataclass(frozen=True)
class Case:
    """One decision: the time, the plan's slots, and the actions expected, all as text."""

    name: str
    now: str
    slots: str  # "10:00-11:00, 11:00-11:30 BOOST"
    expect: str = ""  # "cancel 10:15-11:00; schedule 10:20-11:30"
    current: str = ""  # the gateway's event, "10:15-11:00"
    ours: bool = False  # ... is the one we scheduled (in the memory)
    settings: dict[str, Any] = field(default_factory=dict)
    release_since: str = ""
    keep_until: str = ""
    known: bool = True  # False: no plan from Octopus yet
    fetched: str = ""  # when the plan was fetched (default: now)
    summary: str = ""  # a fragment the summary must hold
    day: str = DAY  # what the times are on ("+1": the day after)


BOOST = {"types": ("SMART", "BOOST")}
WINDOW = {"offpeak_start": "00:30", "offpeak_end": "04:30"}
SPRING, AUTUMN = "2026-03-28", "2026-10-24"  # the nights the UK clocks change, in 2026
# fmt: off
CASES = [
    # -- one SMART dispatch: now, ahead, past, its rounded tail, the 60 s floor
    Case("single now", "10:15", "10:00-11:00", "schedule 10:15-11:00"),
    Case("single ahead", "09:00", "10:00-11:00", summary="next is 10:00-11:00"),
    Case("single past", "12:00", "10:00-11:00", summary="no dispatch needs a hold"),
    Case("rounded tail", "11:10", "10:00-11:05", "schedule 11:10-11:30"),
    Case("fraction of a second", "10:15:30.25", "10:00-11:00", "schedule 10:15:31-11:00"),
    Case("exactly 60 s left", "10:59", "10:00-11:00", "schedule 10:59-11:00"),
    Case("under 60 s left", "10:59:30", "10:00-11:00", summary="under 60 s"),
    # -- merging
    Case("adjacent", "10:15", "10:00-10:30, 10:30-11:00", "schedule 10:15-11:00"),
    Case("overlapping", "10:15", "10:10-10:30, 10:25-11:00", "schedule 10:15-11:00"),
    Case("gap inside a half hour", "10:15", "10:05-10:10, 10:20-11:00", "schedule 10:15-11:00"),
    Case("gap of a half hour", "10:15", "10:00-10:20, 11:10-11:20", "schedule 10:15-10:30"),
    # -- unaligned seconds: the half hour a dispatch starts in is billed off-peak
    Case("unaligned start", "08:40", "08:55:10-09:20", "schedule 08:40-09:30"),
    Case("unaligned, start as planned", "08:40", "08:55:10-09:20",
         settings={"align_start": False}, summary="next is 08:55:10-09:30"),
    Case("unaligned, end still rounded", "09:00", "08:55:10-09:20", "schedule 09:00-09:30",
         settings={"align_start": False}),
    # -- the minimum dispatch length
    Case("tiny slot", "14:01", "14:00-14:02"),
    Case("just under the minimum", "14:01", "14:00-14:04:59"),
    Case("tiny slot, no minimum", "14:01", "14:00-14:02", "schedule 14:01-14:30",
         settings={"min_dispatch_minutes": 0}),
    Case("tiny slots touching", "14:01", "14:00-14:03, 14:03-14:06", "schedule 14:01-14:30"),
    # -- charging types
    Case("BOOST ignored", "16:00", "15:07:06-19:43:40 BOOST"),
    Case("BOOST configured", "16:00", "15:07:06-19:43:40 BOOST", "schedule 16:00-20:00",
         settings=BOOST),
    Case("TEST ignored", "10:15", "10:00-11:00 TEST"),
    Case("TEST configured", "10:15", "10:00-11:00 TEST", "schedule 10:15-11:00",
         settings={"types": ("test",)}),
    Case("legacy smart-charge", "10:15", "10:00-11:00 smart-charge", "schedule 10:15-11:00"),
    Case("legacy null source", "10:15", "10:00-11:00 null", "schedule 10:15-11:00"),
    Case("legacy bump-charge", "10:15", "10:00-11:00 bump-charge"),
    Case("unknown type", "10:15", "10:00-11:00 TURBO"),
    Case("BOOST does not extend SMART", "10:15", "10:00-10:30, 10:30-12:00 BOOST",
         "schedule 10:15-10:30"),
    # -- the regular off-peak window (23:30-05:30 Europe/London)
    Case("inside off-peak", "00:30+1", "23:30-02:30+1"),
    Case("crossing 05:30, before", "05:00", "04:00-06:10", summary="next is 05:30-06:30"),
    Case("crossing 05:30, after", "05:31", "04:00-06:10", "schedule 05:31-06:30"),
    Case("crossing 05:30 by 2 min", "05:30", "04:00-05:32", "schedule 05:30-06:00"),
    Case("crossing 23:30", "23:00", "22:50-00:30+1", "schedule 23:00-23:30"),
    Case("off-peak not skipped", "00:30+1", "23:30-02:30+1", "schedule 00:30+1-02:30+1",
         settings={"skip_offpeak": False}),
    Case("own window", "23:45", "23:30-02:30+1", "schedule 23:45-00:30+1", settings=WINDOW),
    Case("own window off the half hour", "23:20", "23:00-23:50", "schedule 23:20-23:45",
         settings={"offpeak_start": "23:45"}),
    Case("no window", "00:30+1", "23:30-02:30+1", "schedule 00:30+1-02:30+1",
         settings={"offpeak_end": "23:30"}),
    # -- both DST nights: forward at 01:00 UTC on 29 March, back at 01:00 UTC on 25 October
    Case("spring, inside", "02:00+1", "23:30-03:00+1", day=SPRING),
    Case("spring, 23:10 GMT is not off-peak", "23:10", "23:00-05:00+1",
         "schedule 23:10-23:30", day=SPRING),
    Case("spring, 05:10 BST is off-peak", "04:10+1", "04:00+1-05:00+1",
         summary="next is 04:30-05:00", day=SPRING),
    Case("spring, 05:40 BST is not", "04:40+1", "04:00+1-05:00+1",
         "schedule 04:40+1-05:00+1", day=SPRING),
    Case("autumn, inside", "01:30+1", "22:30-03:00+1", day=AUTUMN),
    Case("autumn, 23:10 BST is not off-peak", "22:10", "22:00-23:00",
         "schedule 22:10-22:30", day=AUTUMN),
    Case("autumn, 05:10 GMT is off-peak", "05:10+1", "05:00+1-06:00+1",
         summary="next is 05:30-06:00", day=AUTUMN),
    Case("autumn, 05:35 GMT is not", "05:35+1", "05:00+1-06:00+1",
         "schedule 05:35+1-06:00+1", day=AUTUMN),
    # -- what the gateway already holds
    Case("our hold matches", "10:20", "10:00-11:00", current="10:15-11:00", ours=True,
         summary="as wanted"),
    Case("restart, gateway holding", "10:20", "10:00-11:00", current="10:15-11:00",
         summary="covers the wanted hold"),
    Case("restart, replace policy", "10:20", "10:00-11:00", current="10:15-11:00",
         settings={"foreign_hold": "replace"}),
    Case("our hold, end within hysteresis", "10:20", "10:00-11:00", current="10:15-10:57",
         ours=True),
    Case("our hold, gateway clock 1 s late", "10:15", "10:00-11:00",
         current="10:15:01-11:00", ours=True),
    Case("ended event still listed", "10:20", "10:00-11:00",
         "cancel 09:00-10:00; schedule 10:20-11:00", current="09:00-10:00"),
    # -- last-minute changes
    Case("end moved later", "10:20", "10:00-11:20", "cancel 10:15-11:00; schedule 10:20-11:30",
         current="10:15-11:00", ours=True),
    Case("end moved earlier, first seen", "10:20", "10:00-10:50", current="10:15-11:30",
         ours=True, summary="for the 5 min hysteresis"),
    Case("end moved earlier, settled", "10:20", "10:00-10:50",
         "cancel 10:15-11:30; schedule 10:20-11:00", current="10:15-11:30", ours=True,
         release_since="10:15"),
    Case("end moved earlier, no hysteresis", "10:20", "10:00-10:50",
         "cancel 10:15-11:30; schedule 10:20-11:00", current="10:15-11:30", ours=True,
         settings={"hysteresis_minutes": 0}),
    Case("dispatch removed, first seen", "10:20", "13:00-14:00", current="10:15-11:00",
         ours=True),
    Case("dispatch removed, settled: kept to the end of its half hour", "10:20",
         "13:00-14:00", "cancel 10:15-11:00; schedule 10:20-10:30", current="10:15-11:00",
         ours=True, release_since="10:14"),
    Case("dispatch ended and dropped from the plan: the half hour runs out", "10:10", "",
         current="09:30-10:30", ours=True, release_since="09:50",
         summary="ends with this half hour"),
    Case("dispatch removed at 10:29:30: under 60 s left, released", "10:29:30", "13:00-14:00",
         "cancel 10:15-11:00", current="10:15-11:00", ours=True, release_since="10:14"),
    # -- an empty plan while Octopus re-plans
    Case("empty plan, bridged", "10:20", "", current="10:15-11:00", ours=True,
         summary="10 min bridge"),
    Case("empty plan, still bridged", "10:20", "", current="10:15-11:00", ours=True,
         release_since="10:11"),
    Case("empty plan, after the bridge", "10:20", "",
         "cancel 10:15-11:00; schedule 10:20-10:30", current="10:15-11:00", ours=True,
         release_since="10:10"),
    Case("empty plan, hold ends soon", "10:20", "", current="10:15-10:24", ours=True,
         release_since="09:00", summary="left to run out"),
    Case("no plan known", "10:20", "", current="10:15-11:00", ours=True,
         release_since="09:00", known=False),
    Case("stale plan, empty", "10:20", "", current="10:15-11:00", ours=True,
         release_since="09:00", fetched="09:49", summary="31 min old"),
    Case("stale plan, dispatch now", "10:20", "10:00-11:00", fetched="09:49"),
    Case("plan 30 min old", "10:20", "10:00-11:00", "schedule 10:20-11:00", fetched="09:50"),
    Case("plan from a clock ahead", "10:20", "10:00-11:00", "schedule 10:20-11:00",
         fetched="10:25"),
    # -- a Max Backup set by hand (not the one we scheduled)
    Case("hand-set, longer", "10:20", "10:00-11:00", current="09:00-13:00"),
    Case("hand-set, shorter: extended", "10:20", "10:00-11:00",
         "cancel 10:00-10:45; schedule 10:20-11:00", current="10:00-10:45"),
    Case("hand-set, starting soon: covered too", "10:20", "10:00-11:00",
         "cancel 10:40-12:00; schedule 10:20-12:00", current="10:40-12:00"),
    Case("hand-set, later: left", "10:20", "10:00-11:00", current="15:00-16:00",
         summary="after the wanted hold"),
    Case("hand-set, empty plan", "10:20", "", current="10:00-12:00", release_since="09:00"),
    Case("hand-set, replace policy", "10:20", "", "cancel 10:00-12:00", current="10:00-12:00",
         release_since="10:00", settings={"foreign_hold": "replace"}),
    Case("folded hand-set end, hold gone", "10:40", "", keep_until="11:30"),
    Case("folded hand-set end, hold changed by hand", "10:40", "", current="10:20-11:00",
         keep_until="11:30"),
    Case("folded hand-set end kept", "10:40", "", current="10:20-11:30", ours=True,
         keep_until="11:30", release_since="09:00"),
    Case("folded hand-set end, plan shorter", "10:40", "",
         "cancel 10:20-12:00; schedule 10:40-11:30", current="10:20-12:00", ours=True,
         keep_until="11:30", release_since="09:00"),
]
# fmt: on


def _run(case: Case) -> Decision:
    current = None
    if case.current:
        start, end = case.current.split("-")
        current = event(start, end, case.day)
    memory = Memory(
        ours=current if case.ours else None,
        release_since=t(case.release_since, case.day) if case.release_since else None,
        keep_until=t(case.keep_until, case.day) if case.keep_until else None,
    )
    chosen = DispatchSettings(**case.settings)
    known = plan(case.slots, case.day, case.fetched or case.now) if case.known else None
    return decide(t(case.now, case.day), known, current, chosen, memory)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    decision = _run(case)
    assert described(decision.actions, case.day) == case.expect, decision.summary
    assert case.summary in decision.summary
    for action in decision.actions:
        assert action.reason, action
    if not decision.actions:
        assert decision.summary


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_every_schedule_says_why() -> None:
    decision = _run(CASES[0])
    (action,) = decision.actions
    assert isinstance(action, Schedule)
    assert "SMART dispatch 10:00-11:00 UTC as whole half hours" in action.reason
    assert action.duration_seconds == 45 * 60
    merged = decide(
        t("10:15"), plan("10:10-10:30, 10:25-11:00", fetched="10:15"), None, DispatchSettings()
    )
    assert "SMART dispatches 10:10-10:30, 10:25-11:00 UTC" in merged.actions[0].reason
    trimmed = decide(t("05:31"), plan("04:00-06:10", fetched="05:31"), None, DispatchSettings())
    assert "off-peak window left out" in trimmed.actions[0].reason


def test_memory_after_each_kind_of_step() -> None:
    pending = _run(CASES[[c.name for c in CASES].index("end moved earlier, first seen")])
    assert pending.memory.release_since == t("10:20")
    assert pending.wake_at == t("10:25")
    bridged = _run(CASES[[c.name for c in CASES].index("empty plan, bridged")])
    assert bridged.memory.release_since == t("10:20") and bridged.wake_at == t("10:30")
    folded = _run(CASES[[c.name for c in CASES].index("hand-set, shorter: extended")])
    assert folded.memory.keep_until == t("10:45")
    assert folded.memory.ours == event("10:20", "11:00")
    ahead = _run(CASES[[c.name for c in CASES].index("single ahead")])
    assert ahead.wake_at == t("10:00") and ahead.memory == Memory()


# --------------------------------------------------------------------------- scenarios


class Gateway:
    """The gateway's manual backup event: one at a time, a cancel before a new one."""

    def __init__(self, current: BackupEvent | None = None) -> None:
        self.event = current
        self.sent: list[str] = []

    def apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Cancel):
                assert self.event is not None and action.event == self.event, action
                self.event = None
            else:
                assert self.event is None, f"{action} without a cancel first"
                assert action.end - action.start >= MIN_DURATION
                self.event = action.event
        self.sent.extend(described([action]) for action in actions)


def _poll_through(
    steps: Sequence[tuple[str, DispatchPlan | None]],
    chosen: DispatchSettings | None = None,
    gateway: Gateway | None = None,
) -> tuple[Gateway, list[str]]:
    gateway = gateway or Gateway()
    memory = Memory()
    per_step = []
    for now, current_plan in steps:
        if gateway.event is not None and gateway.event.end <= t(now):
            gateway.event = None  # this one forgets an event once it has run out
        if current_plan is not None:  # fetched just now
            current_plan = dataclasses.replace(current_plan, fetched_at=t(now))
        decision = decide(t(now), current_plan, gateway.event, chosen or DispatchSettings(), memory)
        gateway.apply(decision.actions)
        memory = decision.memory
        per_step.append(described(decision.actions))
    return gateway, per_step


def test_a_flickering_plan_does_not_toggle_the_battery() -> None:
    full, gone, shorter = plan("10:00-11:00"), plan(""), plan("10:00-10:20")
    steps = [
        ("10:02", full),
        ("10:05", gone),  # Octopus re-plans: empty for one poll
        ("10:08", full),
        ("10:11", shorter),  # shortened for one poll
        ("10:14", full),
        ("10:17", full),
    ]
    gateway, per_step = _poll_through(steps)
    assert gateway.sent == ["schedule 10:02-11:00"]
    assert gateway.event == event("10:02", "11:00")
    assert per_step[1:] == [""] * 5


def test_a_shortened_dispatch_releases_after_the_hysteresis() -> None:
    full, shorter = plan("10:00-11:30"), plan("10:00-10:25")
    steps = [("10:02", full), ("10:05", shorter), ("10:08", shorter), ("10:11", shorter)]
    gateway, per_step = _poll_through(steps)
    assert per_step == ["schedule 10:02-11:30", "", "", "cancel 10:02-11:30; schedule 10:11-10:30"]
    assert gateway.event == event("10:11", "10:30")


def test_an_empty_plan_bridged_then_released() -> None:
    full, empty = plan("10:00-12:00"), plan("")
    steps = [("10:00", full)] + [(f"10:{m:02d}", empty) for m in (3, 6, 9, 12, 13)]
    gateway, per_step = _poll_through(steps)
    # Released after the bridge, but not inside the half hour it runs in (whole half hours).
    assert per_step == [
        "schedule 10:00-12:00", "", "", "", "", "cancel 10:00-12:00; schedule 10:13-10:30",
    ]  # fmt: skip
    assert gateway.event == event("10:13", "10:30")


def test_an_empty_plan_that_comes_back_keeps_the_hold_and_restarts_the_bridge() -> None:
    full, empty = plan("10:00-12:00"), plan("")
    steps = [("10:00", full), ("10:03", empty), ("10:09", full), ("10:12", empty), ("10:21", empty)]
    gateway, per_step = _poll_through(steps)
    assert per_step == ["schedule 10:00-12:00", "", "", "", ""]
    assert gateway.event == event("10:00", "12:00")


def test_a_day_of_polls_holds_each_dispatch_once() -> None:
    # crossing 05:30; unaligned and then adjacent; BOOST; in the off-peak window
    day = plan("04:00-06:10, 12:55:10-13:40, 13:40-14:00, 16:00-17:00 BOOST, 23:30-02:00+1")
    start = t("03:00")
    steps = [(show(start + timedelta(minutes=3 * n)), day) for n in range(24 * 20)]
    gateway, _ = _poll_through(steps)
    assert gateway.sent == ["schedule 05:30-06:30", "schedule 12:30-14:00"]


def test_a_restart_mid_hold_never_schedules_twice() -> None:
    full = plan("10:00-11:00")
    gateway, _ = _poll_through([("10:05", full)])
    for restarted_at in ("10:06", "10:30", "10:59"):
        fresh = dataclasses.replace(full, fetched_at=t(restarted_at))
        decision = decide(t(restarted_at), fresh, gateway.event, DispatchSettings())  # no memory
        assert decision.actions == (), restarted_at
    assert gateway.sent == ["schedule 10:05-11:00"]


# --------------------------------------------------------------------------- properties

BASES = [t("2026-01-14 00:00"), t("2026-03-28 20:00"), t("2026-07-15 00:00"), t("2026-10-24 20:00")]


@st.composite
def situations(
    draw: st.DrawFn,
) -> tuple[datetime, DispatchPlan, BackupEvent | None, DispatchSettings, Memory]:
    base = draw(st.sampled_from(BASES))
    now = base + timedelta(
        seconds=draw(st.integers(0, 30 * 3600)), microseconds=draw(st.integers(0, 999_999))
    )
    dispatches = []
    for _ in range(draw(st.integers(0, 5))):
        start = now + timedelta(seconds=draw(st.integers(-8 * 3600, 8 * 3600)))
        length = timedelta(seconds=draw(st.integers(1, 6 * 3600)))
        kind = draw(st.sampled_from(["SMART", "SMART", "BOOST", "TEST", "smart-charge"]))
        dispatches.append(PlannedDispatch(start, start + length, kind, None))
    current = None
    ours = False
    if draw(st.booleans()):
        start = now + timedelta(seconds=draw(st.integers(-4 * 3600, 2 * 3600)))
        current = BackupEvent(
            start.replace(microsecond=0),
            start.replace(microsecond=0) + timedelta(seconds=draw(st.integers(60, 8 * 3600))),
        )
        ours = draw(st.booleans())
    chosen = DispatchSettings(
        types=tuple(draw(st.sets(st.sampled_from(["SMART", "BOOST", "TEST"]), min_size=1))),
        skip_offpeak=draw(st.booleans()),
        offpeak_start=draw(st.sampled_from(["23:30", "23:45", "00:00"])),
        offpeak_end=draw(st.sampled_from(["05:30", "04:10", "07:00"])),
        align_start=draw(st.booleans()),
        min_dispatch_minutes=draw(st.sampled_from([0.0, 5.0, 30.0])),
        hysteresis_minutes=draw(st.sampled_from([0.0, 5.0, 20.0])),
        bridge_minutes=draw(st.sampled_from([0.0, 10.0])),
        foreign_hold=draw(st.sampled_from(["keep", "replace"])),
    )
    since = draw(st.sampled_from([None, now - timedelta(minutes=3), now - timedelta(hours=1)]))
    # the end of a hand-set Max Backup folded into our hold, sometimes
    kept = draw(st.sampled_from([None, now + timedelta(minutes=20), now + timedelta(hours=3)]))
    memory = Memory(current if ours else None, since, kept.replace(microsecond=0) if kept else None)
    return now, DispatchPlan("d", now, tuple(dispatches)), current, chosen, memory


def _in_offpeak(moment: datetime, chosen: DispatchSettings) -> bool:
    """Independently of the code under test: is this moment's London time in the window?"""
    first, last = chosen.offpeak_window
    local = moment.astimezone(ZoneInfo(chosen.offpeak_timezone)).time()
    if first == last:
        return False
    return first <= local or local < last if last < first else first <= local < last


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_invariants_over_random_plans(situation: tuple) -> None:
    now, current_plan, current, chosen, memory = situation
    decision = decide(now, current_plan, current, chosen, memory)
    schedules = [a for a in decision.actions if isinstance(a, Schedule)]
    cancels = [a for a in decision.actions if isinstance(a, Cancel)]
    assert len(schedules) <= 1 and len(cancels) <= 1
    for action in schedules:
        assert action.end - action.start >= MIN_DURATION
        assert action.start >= now
        assert action.start.microsecond == 0 and action.end.microsecond == 0
        if current is not None:  # the gateway needs a cancel before a new event
            assert decision.actions[0] == Cancel(current, decision.actions[0].reason)
        if chosen.skip_offpeak:
            hand_set = current if current is not None and memory.ours != current else None
            step = action.start
            while step < action.end:
                inside_hand_set = (
                    hand_set is not None and hand_set.start <= step < hand_set.end
                ) or (memory.keep_until is not None and step < memory.keep_until)
                assert inside_hand_set or not _in_offpeak(step, chosen), step
                step += timedelta(minutes=1)
    if current is None:
        assert not cancels
    # idempotent: the gateway as the actions leave it, asked again, needs nothing more
    gateway = Gateway(current)
    gateway.apply(decision.actions)
    again = decide(now, current_plan, gateway.event, chosen, decision.memory)
    assert again.actions == (), again.summary


PLANS = ["", "", "10:00-11:00", "10:00-10:20", "10:00-12:00", "10:40-11:10", "10:00-11:00 BOOST"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 6), st.sampled_from(PLANS), st.booleans()), min_size=1, max_size=12
    ),
    st.sampled_from([0.0, 5.0]),
    st.sampled_from([0.0, 10.0]),
)
def test_polls_over_time_keep_the_rules(
    steps: list[tuple[int, str, bool]], hysteresis: float, bridge: float
) -> None:
    """A run of polls: the gateway always gets a cancel first; an empty plan never ends a hold
    before the plans have wanted less for the bridge; a Max Backup set by hand is respected."""
    chosen = DispatchSettings(hysteresis_minutes=hysteresis, bridge_minutes=bridge)
    gateway, memory, now = Gateway(), Memory(), t("09:58")
    asking_less_since: datetime | None = None  # the plans have wanted less than the hold since
    for minutes, slots, by_hand in steps:
        now += timedelta(minutes=minutes)
        if gateway.event is not None and gateway.event.end <= now:
            gateway.event = None
        if by_hand and gateway.event is None and slots == "":
            gateway.event = BackupEvent(now.replace(second=0), now + timedelta(minutes=90))
        before = gateway.event
        poll = plan(slots, fetched=show(now))
        wants_all = before is not None and any(
            h.covers(now) and h.end >= before.end - chosen.hysteresis
            for h in plan_holds(poll, chosen)
        )
        asking_less_since = None if before is None or wants_all else asking_less_since or now
        decision = decide(now, poll, before, chosen, memory)
        gateway.apply(decision.actions)  # asserts a cancel before every schedule
        if before is not None and decision.actions and memory.ours != before:
            # a Max Backup set by hand: never ended or cut short, only ever covered
            assert gateway.event is not None and gateway.event.end >= before.end
        if slots == "" and [type(a) for a in decision.actions] == [Cancel]:
            # released on an empty plan: only after the plans have wanted less for the bridge
            assert asking_less_since is not None and now - asking_less_since >= chosen.bridge
        memory = decision.memory


@settings(max_examples=200, deadline=None)
@given(situations())
def test_holds_are_half_hours_outside_off_peak(situation: tuple) -> None:
    _, current_plan, _, chosen, _ = situation
    holds = plan_holds(current_plan, chosen)
    for earlier, later in itertools.pairwise(holds):
        assert earlier.end < later.start  # merged: never touching
    aligned = all(edge.minute in (0, 30) for edge in chosen.offpeak_window)
    for hold in holds:
        assert hold.end - hold.start >= MIN_DURATION
        if aligned:  # window edges off the half hour may cut a hold there
            assert hold.start == floor_half_hour(hold.start) or not chosen.align_start
            assert hold.end == ceil_half_hour(hold.end)
        assert all(charging_type(d.kind) in chosen.types for d in hold.dispatches)
        if chosen.skip_offpeak:
            steps = int((hold.end - hold.start) / timedelta(minutes=1))
            moments = [hold.start + timedelta(minutes=n) for n in range(steps)]
            assert not any(
                _in_offpeak(m, chosen) for m in [*moments, hold.end - timedelta(seconds=1)]
            )


# --------------------------------------------------------------------------- conformance

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "octopus" / "graphql"
SHARED_FILES = sorted(FIXTURES.glob("flex_planned_dispatches.*.response.json")) + sorted(
    FIXTURES.glob("planned_dispatches.legacy.response.json")
)
SAMPLES: list[tuple[str, dict[str, Any]]] = list(RESPONSES.items()) + [
    (path.stem, json.loads(path.read_text())) for path in SHARED_FILES
]


@pytest.mark.parametrize(("name", "body"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_plan_samples_give_sane_decisions(name: str, body: dict[str, Any]) -> None:
    sample = plan_from_response(body)
    chosen = DispatchSettings()
    holds = plan_holds(sample, chosen)
    if name in EXPECTED_HOLDS:
        assert [(h.start, h.end) for h in holds] == EXPECTED_HOLDS[name]
    moments = {d.start for d in sample.dispatches} | {d.end for d in sample.dispatches}
    moments |= {m + timedelta(minutes=7) for m in set(moments)} | {h.start for h in holds}
    for now in sorted(moments):
        sample = dataclasses.replace(sample, fetched_at=now)
        decision = decide(now, sample, None, chosen)
        covering = [h for h in holds if h.start <= now < h.end and h.end - now >= MIN_DURATION]
        if covering:
            (action,) = decision.actions
            assert isinstance(action, Schedule)
            assert action.end == covering[0].end and action.start >= now
        else:
            assert decision.actions == (), (name, now)
        gateway = Gateway()
        gateway.apply(decision.actions)
        assert decide(now, sample, gateway.event, chosen, decision.memory).actions == ()


def test_the_shared_fixtures_are_all_expected_when_present() -> None:
    """Every fixture file that exists has its expected holds written down (or none exist)."""
    assert all(path.stem in EXPECTED_HOLDS for path in SHARED_FILES)


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("moment", "floor", "ceil"),
    [
        ("08:55:10", "08:30", "09:00"),
        ("09:00", "09:00", "09:00"),
        ("09:00:00.5", "09:00", "09:30"),
        ("2026-03-29 01:10", "2026-03-29 01:00", "2026-03-29 01:30"),
    ],
)
def test_half_hours(moment: str, floor: str, ceil: str) -> None:
    assert floor_half_hour(t(moment)) == t(floor)
    assert ceil_half_hour(t(moment)) == t(ceil)


@pytest.mark.parametrize(
    ("night", "opens", "closes"),
    [
        ("2026-01-14 12:00", "2026-01-14 23:30", "2026-01-15 05:30"),  # GMT
        ("2026-07-15 12:00", "2026-07-15 22:30", "2026-07-16 04:30"),  # BST
        ("2026-03-28 12:00", "2026-03-28 23:30", "2026-03-29 04:30"),  # spring forward
        ("2026-10-24 12:00", "2026-10-24 22:30", "2026-10-25 05:30"),  # autumn back
    ],
)
def test_offpeak_window_in_utc(night: str, opens: str, closes: str) -> None:
    start = t(night)
    windows = offpeak_windows(start, start + timedelta(hours=20), DispatchSettings())
    assert (t(opens), t(closes)) in windows
    assert (
        offpeak_windows(start, start + timedelta(hours=20), DispatchSettings(skip_offpeak=False))
        == []
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("SMART", "SMART"),
        ("smart-charge", "SMART"),
        ("null", "SMART"),
        (None, "SMART"),
        ("", "SMART"),
        ("bump-charge", "BOOST"),
        ("Boost", "BOOST"),
        ("TEST", "TEST"),
        ("weird", "WEIRD"),
    ],
)
def test_charging_types(kind: str | None, expected: str) -> None:
    assert charging_type(kind) == expected


def test_a_hold_under_60_s_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="60 s"):
        Schedule(t("10:00"), t("10:00:59"), "too short")
    with pytest.raises(ValueError, match="whole seconds"):
        Schedule(t("10:00:00.5"), t("10:30"), "fraction")
    assert Schedule(t("10:00"), t("10:01"), "ok").duration_seconds == 60


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(datetime(2026, 3, 10, 10), plan(""), None, DispatchSettings())


def test_memory_round_trips_as_json() -> None:
    memory = Memory(event("10:00", "11:00"), t("10:20"), t("10:45"))
    assert Memory.from_payload(json.loads(json.dumps(memory.to_payload()))) == memory
    assert Memory.from_payload(Memory().to_payload()) == Memory()
    with pytest.raises(MalformedMessage):
        Memory.from_payload({"ours": ["2026-03-10T10:00:00+00:00"]})


# --------------------------------------------------------------------------- settings


def _settings(env: dict[str, str]) -> DispatchSettings:
    return load(DispatchSettings, "dispatch", Sources.gather(env=env))


def test_settings_from_the_environment() -> None:
    chosen = _settings(
        {
            "PWBUS_DISPATCH_TYPES": "smart, boost",
            "PWBUS_DISPATCH_OFFPEAK_START": "00:30",
            "PWBUS_DISPATCH_OFFPEAK_END": "04:30",
            "PWBUS_DISPATCH_OFFPEAK_TIMEZONE": "Europe/Dublin",
            "PWBUS_DISPATCH_HYSTERESIS_MINUTES": "7.5",
            "PWBUS_DISPATCH_FOREIGN_HOLD": "replace",
            "PWBUS_DISPATCH_DRY_RUN": "yes",
        }
    )
    assert chosen.types == ("SMART", "BOOST")
    assert (chosen.offpeak_start, chosen.offpeak_end, chosen.offpeak_timezone) == (
        "00:30",
        "04:30",
        "Europe/Dublin",
    )
    assert chosen.hysteresis == timedelta(minutes=7.5)
    assert chosen.foreign_hold == "replace" and chosen.dry_run
    assert _settings({}) == DispatchSettings()


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        (
            {"PWBUS_DISPATCH_TYPES": "SMART,CHEAP"},
            "dispatch.types",
            "entry 2 must be SMART, BOOST or TEST",
        ),
        ({"PWBUS_DISPATCH_OFFPEAK_START": "7:30"}, "dispatch.offpeak_start", "HH:MM"),
        (
            {"PWBUS_DISPATCH_OFFPEAK_END": "24:00"},
            "dispatch.offpeak_end",
            "between 00:00 and 23:59",
        ),
        ({"PWBUS_DISPATCH_OFFPEAK_TIMEZONE": "Mars/Olympus"}, "dispatch.offpeak_timezone", "IANA"),
        (
            {"PWBUS_DISPATCH_OFFPEAK_TIMEZONE": "../../etc/passwd"},
            "dispatch.offpeak_timezone",
            "IANA",
        ),
        (
            {"PWBUS_DISPATCH_MIN_MINUTES": "300"},
            "dispatch.min_dispatch_minutes",
            "between 0 and 240",
        ),
        ({"PWBUS_DISPATCH_FOREIGN_HOLD": "cancel"}, "dispatch.foreign_hold", "keep, replace"),
    ],
)
def test_bad_settings_name_the_key_and_not_the_value(
    env: dict[str, str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(env)
    assert caught.value.key == key and fragment in str(caught.value)
    assert next(iter(env.values())) not in str(caught.value)


def test_settings_made_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"dispatch\.types"):
        DispatchSettings(types=())
    with pytest.raises(ConfigError, match=r"dispatch\.offpeak_start"):
        DispatchSettings(offpeak_start="noon")
    assert DispatchSettings(types=("boost", "BOOST", "smart")).types == ("BOOST", "SMART")
    assert dataclasses.replace(DispatchSettings(), align_start=False).align_start is False


def test_the_rules_page_states_the_defaults() -> None:
    """docs/dispatch-decisions.md quotes the default numbers; they must stay the code's."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "dispatch-decisions.md").read_text()
    defaults = DispatchSettings()
    for name in (
        "min_dispatch_minutes",
        "hysteresis_minutes",
        "bridge_minutes",
        "plan_max_age_minutes",
    ):
        assert f"(`{name}`, {getattr(defaults, name):g})" in doc, name
    assert f"`offpeak_end`, {defaults.offpeak_start}-{defaults.offpeak_end} local" in doc
    assert f"within {CLOCK_SLACK.seconds} s" in doc


# --------------------------------------------------------------------------- dry run


def test_dry_run_lines_show_utc_local_time_and_reasons() -> None:
    decision = decide(
        t("2026-03-29 04:40"),
        plan("04:00-05:00", "2026-03-29", fetched="04:40"),
        event("2026-03-29 04:00", "2026-03-29 04:30"),
        DispatchSettings(),
    )
    lines = decision_lines(decision)
    assert lines[0].startswith("would cancel Max Backup 2026-03-29 04:00:00 UTC (05:00 BST)")
    assert lines[1].startswith(
        "would schedule Max Backup from 2026-03-29 04:40:00 UTC (05:40 BST) "
        "to 2026-03-29 05:00:00 UTC (06:00 BST), 20 min (duration_seconds=1200): hold until 05:00"
    )
    assert "SMART dispatch 04:00-05:00 UTC" in lines[1]
    assert lines[2] == (
        "planned hold 2026-03-29 04:30:00 UTC (05:30 BST) "
        "to 2026-03-29 05:00:00 UTC (06:00 BST), 30 min"
    )
    assert len(lines) == 3


def test_dry_run_lines_when_nothing_is_sent() -> None:
    decision = decide(t("09:00"), plan("10:00-11:00", fetched="09:00"), None, DispatchSettings())
    assert decision_lines(decision, "Europe/London") == [
        "nothing to send: no hold now; the next is 10:00-11:00 UTC",
        "planned hold 2026-03-10 10:00:00 UTC (10:00 GMT) "
        "to 2026-03-10 11:00:00 UTC (11:00 GMT), 1 h 00 min",
        "decide again by 2026-03-10 10:00:00 UTC (10:00 GMT)",
    ]
    empty = decide(t("09:00"), plan("", fetched="09:00"), None, DispatchSettings())
    assert decision_lines(empty) == [
        "nothing to send: the plan is empty: no hold",
        "the plan asks for no hold",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60, "1 min"),
        (59, "59 s"),
        (1510, "25 min 10 s"),
        (1800, "30 min"),
        (3900, "1 h 05 min"),
        (3601, "1 h 00 min 01 s"),
    ],
)
def test_duration_text(seconds: int, text: str) -> None:
    assert duration_text(timedelta(seconds=seconds)) == text
