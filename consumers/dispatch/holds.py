"""From an Octopus dispatch plan to the Max Backup holds it asks for: pure interval arithmetic.

Everything is computed in UTC; the local time zone (Europe/London by default) is used for one
thing only, placing the regular off-peak window on the calendar, so both DST nights come out
right (the window is 23:30 GMT to 05:30 BST on the spring night, 23:30 BST to 05:30 GMT on the
autumn one). Half hours are counted from the Unix epoch: UK offsets are whole hours, so UTC half
hours are the billing half hours.

The steps, in order (each one is a rule from the Octopus facts, see :func:`plan_holds`):

1. keep only the allowed charging types (SMART by default; BOOST is billed at the peak rate);
2. merge overlapping and touching dispatches into runs;
3. drop runs shorter than the minimum dispatch length (a 14:00-14:02 slot is no charge);
4. cut the regular off-peak window out (the whole house is cheap there anyway); the part of a
   run outside the window still counts, however short, because the run is real;
5. round every piece out to whole half hours (if any part of a half hour is a smart dispatch,
   the whole half hour is billed off-peak): ends up, starts down (``align_start``);
6. cut the off-peak window out again (a window edge off the half hour could be crossed by the
   rounding), merge what now touches, and drop what is shorter than the gateway's 60 s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from powerwall_bus.shared.max_backup import MIN_DURATION
from powerwall_bus.shared.octopus.plan import DispatchPlan, PlannedDispatch
from powerwall_bus.shared.settings import DispatchSettings

__all__ = [
    "HALF_HOUR",
    "Hold",
    "ceil_half_hour",
    "charging_type",
    "floor_half_hour",
    "offpeak_windows",
    "plan_holds",
]

HALF_HOUR = timedelta(minutes=30)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Octopus's charging types, and the legacy ``plannedDispatches`` sources they replaced.
_TYPE_NAMES = {
    "SMART": "SMART",
    "SMART-CHARGE": "SMART",
    "NULL": "SMART",  # the legacy query's null source is a smart charge
    "BOOST": "BOOST",
    "BUMP-CHARGE": "BOOST",
    "TEST": "TEST",
}

Interval = tuple[datetime, datetime]


def charging_type(kind: str | None) -> str:
    """``SMART``, ``BOOST`` or ``TEST`` for a dispatch's type, legacy names included.

    ``smart-charge`` and a missing (null) source are SMART, ``bump-charge`` is BOOST
    (Octopus's legacy ``plannedDispatches`` vocabulary); anything else comes back upper-cased
    and matches no setting, so an unknown type never holds the battery.
    """
    name = (kind or "null").strip().upper().replace("_", "-") or "NULL"
    return _TYPE_NAMES.get(name, name)


def floor_half_hour(moment: datetime) -> datetime:
    """The start of the half hour ``moment`` is in."""
    return moment - (moment - _EPOCH) % HALF_HOUR


def ceil_half_hour(moment: datetime) -> datetime:
    """``moment`` if it is on a half hour, else the next half hour."""
    rest = (moment - _EPOCH) % HALF_HOUR
    return moment if not rest else moment + (HALF_HOUR - rest)


@dataclass(frozen=True, order=True)
class Hold:
    """A span ``[start, end)`` (aware UTC) the plan wants the battery held, and why."""

    start: datetime
    end: datetime
    #: The planned dispatches behind it, in time order.
    dispatches: tuple[PlannedDispatch, ...] = ()
    #: Part of those dispatches fell in the regular off-peak window and was left out.
    trimmed: bool = False

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def offpeak_windows(start: datetime, end: datetime, settings: DispatchSettings) -> list[Interval]:
    """Every regular off-peak window (UTC) that meets ``[start, end)``; none if switched off.

    The window is placed by the local calendar and converted per night, so its UTC times move
    with the clocks. Equal start and end times mean there is no window.
    """
    first, last = settings.offpeak_window
    if not settings.skip_offpeak or first == last:
        return []
    zone = settings.zone
    day = start.astimezone(zone).date() - timedelta(days=1)
    final: date = end.astimezone(zone).date() + timedelta(days=1)
    windows = []
    while day <= final:
        until = day + timedelta(days=1) if last < first else day
        opens = datetime.combine(day, first, zone).astimezone(UTC)
        closes = datetime.combine(until, last, zone).astimezone(UTC)
        if opens < end and closes > start:
            windows.append((opens, closes))
        day += timedelta(days=1)
    return windows


def _outside(interval: Interval, windows: Sequence[Interval]) -> list[Interval]:
    """The parts of ``interval`` outside every window."""
    pieces = [interval]
    for w_start, w_end in windows:
        cut: list[Interval] = []
        for start, end in pieces:
            if w_end <= start or end <= w_start:
                cut.append((start, end))
                continue
            if start < w_start:
                cut.append((start, w_start))
            if w_end < end:
                cut.append((w_end, end))
        pieces = cut
    return pieces


def _when(dispatch: PlannedDispatch) -> tuple[datetime, datetime, str]:
    return dispatch.start, dispatch.end, dispatch.kind


def _runs(
    dispatches: Sequence[PlannedDispatch],
) -> Iterator[tuple[Interval, list[PlannedDispatch]]]:
    """Overlapping and touching dispatches as runs, each with its dispatches."""
    run: list[PlannedDispatch] = []
    end: datetime | None = None
    for dispatch in sorted(dispatches, key=_when):
        start = dispatch.start.astimezone(UTC)
        if run and end is not None and start <= end:
            run.append(dispatch)
            end = max(end, dispatch.end.astimezone(UTC))
            continue
        if run and end is not None:
            yield (run[0].start.astimezone(UTC), end), run
        run, end = [dispatch], dispatch.end.astimezone(UTC)
    if run and end is not None:
        yield (run[0].start.astimezone(UTC), end), run


def plan_holds(plan: DispatchPlan, settings: DispatchSettings) -> tuple[Hold, ...]:
    """The holds a plan asks for, in time order, never overlapping or touching each other."""
    allowed = [d for d in plan.dispatches if charging_type(d.kind) in settings.types]
    pieces: list[tuple[Interval, list[PlannedDispatch], bool]] = []
    for (start, end), run in _runs(allowed):
        if end - start < settings.min_dispatch:
            continue
        windows = offpeak_windows(start, end, settings)
        outside = _outside((start, end), windows)
        trimmed = outside != [(start, end)]
        for piece_start, piece_end in outside:
            low = floor_half_hour(piece_start) if settings.align_start else piece_start
            high = ceil_half_hour(piece_end)
            for rounded in _outside((low, high), offpeak_windows(low, high, settings)):
                pieces.append((rounded, run, trimmed))
    holds: list[Hold] = []
    for (start, end), run, trimmed in sorted(pieces, key=lambda p: p[0]):
        if holds and start <= holds[-1].end:
            last = holds[-1]
            joined = tuple(sorted(set(last.dispatches) | set(run), key=_when))
            holds[-1] = Hold(last.start, max(last.end, end), joined, last.trimmed or trimmed)
        else:
            holds.append(Hold(start, end, tuple(run), trimmed))
    return tuple(h for h in holds if h.end - h.start >= MIN_DURATION)
