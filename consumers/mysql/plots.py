"""``pwbus report --plot``: a report drawn as a PNG with matplotlib.

Kept apart from :mod:`~consumers.mysql.reports` so that running and printing a report never
imports matplotlib (an optional extra: ``pip install 'powerwall-bus[plot]'``); it is
imported by :func:`plot_report` only. :data:`CHARTS` says which reports have a chart, so the
command can refuse ``--plot`` before it connects.

The figure's size in pixels is fixed (:data:`FIGURE_INCHES` x :data:`FIGURE_DPI`), whatever
the data, with one panel per gateway. Energy reports stack where the energy came from
upward and where it went downward; NULL periods are drawn as "no data", not as zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from powerwall_bus.consumers.mysql.reports import ReportResult, Value, report_title
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.gateway.payloads import finite_float

# The chart's size in pixels is FIGURE_INCHES * FIGURE_DPI, whatever the data.
FIGURE_INCHES = (10.0, 5.5)
FIGURE_DPI = 100

# Where the energy of a day comes from (stacked up) and where it goes (stacked down).
_ENERGY_SOURCES = (
    ("solar_kwh", "solar produced", "#f2b705"),
    ("grid_import_kwh", "from grid", "#7f7f7f"),
    ("battery_discharged_kwh", "battery discharged", "#2e9e5b"),
)
_ENERGY_USES = (
    ("home_kwh", "home used", "#3a6fb0"),
    ("grid_export_kwh", "to grid", "#b5b5b5"),
    ("battery_charged_kwh", "battery charged", "#9fd8b5"),
)
_PROFILE_LINES = (
    ("solar_w", "solar", "#f2b705"),
    ("home_w", "home", "#3a6fb0"),
    ("grid_w", "grid (+ import)", "#7f7f7f"),
    ("battery_w", "battery (+ discharge)", "#2e9e5b"),
)
CHARTS = {
    "daily": "energy",
    "monthly": "energy",
    "hourly": "profile",
    "completeness": "completeness",
    "peaks": "peaks",
}


def check_chart(name: str) -> str:
    """The kind of chart of report ``name``; a ConfigError naming the charted reports if none."""
    kind = CHARTS.get(name)
    if kind is None:
        charted = ", ".join(sorted(CHARTS))
        raise ConfigError("plot", f"report {name!r} has no chart; charts: {charted}")
    return kind


def plot_report(result: ReportResult, path: Path) -> None:
    """Draw the report as a PNG: stacked energy bars, the hourly profile, or daily bars.

    One panel per gateway. Raises ConfigError for a report without a chart, or when
    matplotlib is missing (``pip install 'powerwall-bus[plot]'``).
    """
    kind = check_chart(result.name)
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plot", "needs matplotlib: pip install 'powerwall-bus[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    gateways = sorted({str(g) for g in result.column("gateway")}) or ["(no data)"]
    figure, axes_grid = pyplot.subplots(
        len(gateways),
        1,
        figsize=FIGURE_INCHES,
        dpi=FIGURE_DPI,
        squeeze=False,
        sharex=True,
    )
    try:
        for axes, gateway in zip(axes_grid[:, 0], gateways, strict=True):
            rows = [r for r in result.records() if str(r["gateway"]) == gateway]
            if kind == "energy":
                _plot_energy(axes, rows, result.columns[0])
            elif kind == "profile":
                _plot_profile(axes, rows)
            elif kind == "completeness":
                _plot_completeness(axes, rows)
            else:
                _plot_peaks(axes, rows)
            axes.set_title(gateway, fontsize=9, loc="right", color="#555555")
            axes.grid(axis="y", color="#e0e0e0", linewidth=0.8)
            axes.set_axisbelow(True)
            axes.label_outer()
        figure.suptitle(report_title(result), fontsize=11)
        handles, labels = axes_grid[0, 0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
        figure.tight_layout(rect=(0, 0, 0.83 if handles else 1, 1))
        figure.savefig(path, format="png", dpi=FIGURE_DPI)
    finally:
        pyplot.close(figure)


def _number_or_zero(value: Any) -> float:
    """A report value as a bar or point height: no number (SQL NULL) is drawn at 0."""
    return finite_float(value) or 0.0


def _label_axis(axes: Any, labels: list[str]) -> None:
    positions = list(range(len(labels)))
    every = max(1, len(labels) // 16)
    axes.set_xticks(positions[::every])
    axes.set_xticklabels(
        labels[::every],
        rotation=45 if len(labels) > 8 else 0,
        ha="right" if len(labels) > 8 else "center",
        fontsize=8,
    )


def _mark_missing(axes: Any, rows: list[dict[str, Value]], columns: list[str]) -> None:
    """Write "no data" on the periods whose values are all NULL."""
    for position, row in enumerate(rows):
        if all(row[c] is None for c in columns):
            axes.text(
                position,
                0,
                "no data",
                ha="center",
                va="bottom",
                fontsize=7,
                color="#888888",
                rotation=90,
            )


def _plot_energy(axes: Any, rows: list[dict[str, Value]], period: str) -> None:
    labels = [str(r[period]) for r in rows]
    positions = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for column, label, colour in _ENERGY_SOURCES:
        values = [_number_or_zero(r[column]) for r in rows]
        axes.bar(positions, values, bottom=bottom, color=colour, label=label, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    bottom = [0.0] * len(rows)
    for column, label, colour in _ENERGY_USES:
        values = [-_number_or_zero(r[column]) for r in rows]
        axes.bar(
            positions,
            values,
            bottom=bottom,
            color=colour,
            label=label,
            width=0.8,
            edgecolor="white",
            linewidth=0.3,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_ylabel("kWh  (up: sources, down: uses)", fontsize=8)
    _label_axis(axes, labels)
    _mark_missing(axes, rows, [c for c, _l, _c in _ENERGY_SOURCES + _ENERGY_USES])


def _plot_profile(axes: Any, rows: list[dict[str, Value]]) -> None:
    hours = [_number_or_zero(r["hour"]) for r in rows]
    for column, label, colour in _PROFILE_LINES:
        values = [_number_or_zero(r[column]) / 1000 for r in rows]
        axes.plot(hours, values, label=label, color=colour, linewidth=2, marker="o", markersize=3)
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_xticks(range(0, 24, 2))
    axes.set_xlim(-0.5, 23.5)
    axes.set_xlabel("hour of day", fontsize=8)
    axes.set_ylabel("average power, kW", fontsize=8)


def _plot_completeness(axes: Any, rows: list[dict[str, Value]]) -> None:
    labels = [str(r["day"]) for r in rows]
    values = [_number_or_zero(r["completeness_pct"]) for r in rows]
    colours = ["#2e9e5b" if v >= 99 else "#f2b705" if v >= 90 else "#c0392b" for v in values]
    axes.bar(range(len(rows)), values, color=colours, width=0.8)
    axes.axhline(100, color="#333333", linewidth=0.8, linestyle="--")
    axes.set_ylabel("samples stored, %", fontsize=8)
    _label_axis(axes, labels)


def _plot_peaks(axes: Any, rows: list[dict[str, Value]]) -> None:
    labels = [str(r["day"]) for r in rows]
    positions = range(len(rows))
    axes.bar(
        positions,
        [_number_or_zero(r["peak_import_w"]) / 1000 for r in rows],
        color="#7f7f7f",
        label="peak import",
        width=0.8,
    )
    axes.bar(
        positions,
        [-_number_or_zero(r["peak_export_w"]) / 1000 for r in rows],
        color="#f2b705",
        label="peak export",
        width=0.8,
    )
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_ylabel("kW  (up: import, down: export)", fontsize=8)
    _label_axis(axes, labels)
    _mark_missing(axes, rows, ["peak_import_w", "peak_export_w"])
