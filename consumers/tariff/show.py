"""The tariff as a person reads it: one line per period, then what was decided and why."""

from __future__ import annotations

from powerwall_bus.consumers.tariff.build import Built, Side, periods

__all__ = ["table"]


def _times(side: Side, name: str) -> str:
    if side.banding.is_flat:
        return "all day"
    found = periods(side.banding.slots).get(name, [])
    return ", ".join(
        f"{p['fromHour']:02d}:{p['fromMinute']:02d}-{p['toHour']:02d}:{p['toMinute']:02d}"
        for p in found
    )


def _side(title: str, side: Side, schedule: Side) -> list[str]:
    lines = [f"{title}: {side.name} {side.code}".rstrip()]
    if side.standing_charge:
        lines[0] += f", standing charge £{side.standing_charge / 100:.4f}/day"
    lines.append(f"  {'period':<15} {'£/kWh':>8}  {'Octopus p/kWh':<22} {'error p':>7}  times")
    shown = schedule if side.banding.is_flat and not schedule.banding.is_flat else side
    for band in shown.banding.bands:
        price = side.banding.bands[0] if side.banding.is_flat else band
        members = price.members
        octopus = (
            f"{members[0]:.2f}"
            if len(members) == 1
            else f"{min(members):.2f}..{max(members):.2f} ({len(members)})"
        )
        lines.append(
            f"  {band.name:<15} {price.price:>8.5f}  {octopus:<22} {price.error:>7.2f}  "
            f"{_times(shown, band.name)}"
        )
    return lines


def table(built: Built) -> str:
    """Buy and sell periods (every day, Europe/London wall clock), then the notes."""
    lines = [f"every day of the week, Europe/London wall clock, from {built.window.day}"]
    lines += _side("buy", built.buy, built.buy)
    lines += _side("sell", built.sell, built.buy)
    strategy = built.request["tou_settings"]["optimization_strategy"]
    lines.append(f"optimization_strategy: {strategy}")
    lines += [f"note: {note}" for note in built.notes]
    return "\n".join(lines)
