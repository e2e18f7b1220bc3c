"""``pwbus dispatch --dry-run``: a decision as lines a person reads, without sending anything.

Pure text: every time is shown in UTC (what is sent) and in the local zone (what the user's
clock says, GMT or BST, so a DST night reads right), each action with the reason it was chosen.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from powerwall_bus.consumers.dispatch.decide import Action, Cancel, Decision, Schedule

__all__ = ["action_line", "decision_lines", "duration_text", "moment_text"]


def moment_text(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-03-29 04:30:00 UTC (05:30 BST)``."""
    local = moment.astimezone(zone)
    seconds = ":%S" if local.second else ""
    shown = local.strftime("%H:%M" + seconds)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({shown} {local:%Z})"


def duration_text(length: timedelta) -> str:
    """``1 h 05 min``, ``25 min 10 s``, ``45 s``."""
    seconds = int(length.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" + (f" {seconds:02d} s" if seconds else "")
    if minutes:
        return f"{minutes} min" + (f" {seconds:02d} s" if seconds else "")
    return f"{seconds} s"


def action_line(action: Action, zone: ZoneInfo) -> str:
    """One action: what would be sent, and why."""
    if isinstance(action, Schedule):
        return (
            f"would schedule Max Backup from {moment_text(action.start, zone)} "
            f"to {moment_text(action.end, zone)}, {duration_text(action.end - action.start)} "
            f"(duration_seconds={action.duration_seconds}): {action.reason}"
        )
    if isinstance(action, Cancel):
        event = action.event
        return (
            f"would cancel Max Backup {moment_text(event.start, zone)} "
            f"to {moment_text(event.end, zone)}: {action.reason}"
        )
    raise TypeError(f"not an action: {type(action).__name__}")


def decision_lines(decision: Decision, zone: ZoneInfo | str = "Europe/London") -> list[str]:
    """The whole decision: each action (or that nothing is sent), then the plan's holds."""
    place = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    lines = [action_line(action, place) for action in decision.actions]
    if not lines:
        lines.append(f"nothing to send: {decision.summary}")
    lines.extend(_hold_lines(decision, place))
    if decision.wake_at is not None:
        lines.append(f"decide again by {moment_text(decision.wake_at, place)}")
    return lines


def _hold_lines(decision: Decision, zone: ZoneInfo) -> Iterable[str]:
    if not decision.holds:
        yield "the plan asks for no hold"
        return
    for hold in decision.holds:
        yield (
            f"planned hold {moment_text(hold.start, zone)} to {moment_text(hold.end, zone)}, "
            f"{duration_text(hold.end - hold.start)}"
        )
