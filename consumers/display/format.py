"""How a display writes numbers: pure text, no terminal, no clock.

Powers read like the Tesla app's: whole watts below 1 kW, kilowatts with two decimals
from 1 kW, each flow with its direction word rather than a sign, so nobody has to remember
which meter is negative when. The state of energy is always the app's (the caller passes
:attr:`View.soe <powerwall_bus.consumers.display.state.View.soe>`, already scaled).
"""

from __future__ import annotations

from powerwall_bus.consumers.display.state import Freshness, Power, View

__all__ = ["NO_VALUE", "freshness_line", "percent", "power", "power_line", "snapshot_lines"]

#: What a display shows for a number it does not have.
NO_VALUE = "--"


def power(watts: float | None) -> str:
    """``740 W``, ``1.23 kW``, ``-35 W``: W below 1 kW (rounded), kW with two decimals above.

    The choice is made on the rounded watts, so 999.6 W reads ``1.00 kW`` and never
    ``1000 W``.
    """
    if watts is None:
        return NO_VALUE
    whole = round(watts)
    if abs(whole) < 1000:
        return f"{whole} W"
    return f"{watts / 1000:.2f} kW"


def power_line(label: str, flow: Power) -> str:
    """``grid     1.23 kW importing``: the size of a flow and its direction word."""
    text = f"{label:<8} {power(flow.size):>9}"
    return f"{text} {flow.direction}" if flow.direction else text


def percent(value: float | None) -> str:
    """``51.3 %`` (one decimal, as the Tesla app's detail view), or the no-value mark."""
    return NO_VALUE if value is None else f"{value:.1f} %"


def freshness_line(view: View) -> str:
    """One plain sentence on whether the numbers are live; empty when they are."""
    if view.freshness is Freshness.WAITING:
        return "waiting for data from the bus"
    if view.freshness is Freshness.TROUBLE:
        return f"gateway trouble: {view.trouble}"
    if view.freshness is Freshness.STALE:
        age = f"{view.age:.0f} s" if view.age is not None else "a while"
        away = " (broker away)" if not view.bus_connected else ""
        return f"STALE: no reading for {age}{away}"
    return ""


def snapshot_lines(view: View) -> list[str]:
    """The full picture: the four flows, the battery level, the grid and the mode."""
    lines = [
        power_line("solar", view.solar),
        power_line("home", view.home),
        power_line("battery", view.battery),
        power_line("grid", view.grid),
        f"{'level':<8} {percent(view.soe):>9}",
        f"{'grid is':<8} {view.grid_status or NO_VALUE}",
    ]
    if view.mode:
        lines.append(f"{'mode':<8} {view.mode}")
    return lines
