"""Octopus dispatch plans as the GraphQL API answers them: the project's own test data.

The values are written for these tests (none copied from anywhere); the shapes follow Octopus's
``flexPlannedDispatches`` (``start``/``end`` with offsets, ``type`` SMART/BOOST/TEST,
``energyAddedKwh`` as a string that may be negative) and the legacy ``plannedDispatches``
(``delta``, ``meta.source`` smart-charge/bump-charge/null). :func:`plan_from_response` reads
either into the shared :class:`DispatchPlan` with the Octopus client's parsers, so the same
checks run over these and over the team's fixture files when they are present.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from powerwall_bus.shared.octopus.documents import flex_plan, legacy_plan
from powerwall_bus.shared.octopus.plan import DispatchPlan

__all__ = ["EXPECTED_HOLDS", "RESPONSES", "plan_from_response"]


def _flex(*slots: tuple[str, str, str, str]) -> dict[str, Any]:
    items = [{"start": s, "end": e, "type": t, "energyAddedKwh": k} for s, e, t, k in slots]
    return {"data": {"flexPlannedDispatches": items}}


#: Named answers, each a shape users meet (see the facts file's edge cases).
RESPONSES: dict[str, dict[str, Any]] = {
    "typical_winter": _flex(
        ("2026-02-04T12:30:00+00:00", "2026-02-04T13:30:00+00:00", "SMART", "6.8"),
        ("2026-02-04T23:30:00+00:00", "2026-02-05T01:30:00+00:00", "SMART", "14.0"),
        ("2026-02-05T01:30:00+00:00", "2026-02-05T02:00:00+00:00", "SMART", "3.5"),
    ),
    "overlap_unaligned": _flex(
        ("2026-02-11T09:05:00+00:00", "2026-02-11T09:20:00+00:00", "SMART", "-1.5"),
        ("2026-02-11T09:15:00+00:00", "2026-02-11T09:50:00+00:00", "SMART", "-3.1"),
        ("2026-02-11T11:55:10+00:00", "2026-02-11T12:20:00+00:00", "SMART", "-2.0"),
        ("2026-02-11T15:00:00+00:00", "2026-02-11T15:02:00+00:00", "SMART", "-0.2"),
        ("2026-02-11T16:07:06+00:00", "2026-02-11T18:43:40+00:00", "BOOST", "-21.0"),
    ),
    "boost_only": _flex(
        ("2026-04-02T08:12:40+00:00", "2026-04-02T10:00:00+00:00", "BOOST", "12.0"),
    ),
    "summer_crossing_0530": _flex(
        ("2026-06-17T03:00:00+01:00", "2026-06-17T07:00:00+01:00", "SMART", "20.0"),
        ("2026-06-17T13:30:00+00:00", "2026-06-17T14:00:00+00:00", "SMART", "3.6"),
    ),
    "dst_spring": _flex(
        ("2026-03-28T23:00:00+00:00", "2026-03-29T05:00:00+00:00", "SMART", "40.0"),
    ),
    "dst_autumn": _flex(
        ("2026-10-24T22:00:00+00:00", "2026-10-25T06:00:00+00:00", "SMART", "50.0"),
    ),
    "empty": {"data": {"flexPlannedDispatches": []}},
    "null": {"data": {"flexPlannedDispatches": None}},
    "legacy": {
        "data": {
            "plannedDispatches": [
                {
                    "start": "2026-01-07T14:00:00+00:00",
                    "end": "2026-01-07T15:00:00+00:00",
                    "delta": "-7.0",
                    "meta": {"source": "smart-charge", "location": None},
                },
                {
                    "start": "2026-01-07T16:10:30+00:00",
                    "end": "2026-01-07T17:40:00+00:00",
                    "delta": "-12.5",
                    "meta": {"source": "bump-charge", "location": None},
                },
                {
                    "start": "2026-01-07T19:00:00+00:00",
                    "end": "2026-01-07T19:30:00+00:00",
                    "delta": "-3.0",
                    "meta": {"source": None, "location": "AT_HOME"},
                },
            ]
        }
    },
}


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


#: The holds each answer asks for with the default settings (SMART only, 23:30-05:30
#: Europe/London skipped, whole half hours, runs under 5 min ignored), in UTC. Keys are the
#: names above and the team fixtures' file names; a fixture not listed gets the general checks.
EXPECTED_HOLDS: dict[str, list[tuple[datetime, datetime]]] = {
    "typical_winter": [(_t("2026-02-04 12:30"), _t("2026-02-04 13:30"))],
    "overlap_unaligned": [
        (_t("2026-02-11 09:00"), _t("2026-02-11 10:00")),
        (_t("2026-02-11 11:30"), _t("2026-02-11 12:30")),
    ],
    "boost_only": [],
    # 03:00-07:00 BST: off-peak until 05:30 BST (04:30 UTC).
    "summer_crossing_0530": [
        (_t("2026-06-17 04:30"), _t("2026-06-17 06:00")),
        (_t("2026-06-17 13:30"), _t("2026-06-17 14:00")),
    ],
    # Clocks go forward at 01:00 UTC: the window is 23:30 GMT to 05:30 BST = 04:30 UTC.
    "dst_spring": [
        (_t("2026-03-28 23:00"), _t("2026-03-28 23:30")),
        (_t("2026-03-29 04:30"), _t("2026-03-29 05:00")),
    ],
    # Clocks go back at 01:00 UTC: the window is 23:30 BST = 22:30 UTC to 05:30 GMT.
    "dst_autumn": [
        (_t("2026-10-24 22:00"), _t("2026-10-24 22:30")),
        (_t("2026-10-25 05:30"), _t("2026-10-25 06:00")),
    ],
    "empty": [],
    "null": [],
    "legacy": [
        (_t("2026-01-07 14:00"), _t("2026-01-07 15:00")),
        (_t("2026-01-07 19:00"), _t("2026-01-07 19:30")),
    ],
    # The team's fixture files (shared/fixtures/octopus/graphql), by name.
    "flex_planned_dispatches.boost_only.response": [],
    "flex_planned_dispatches.bst.response": [
        (_t("2026-07-15 04:30"), _t("2026-07-15 06:00")),
        (_t("2026-07-15 11:30"), _t("2026-07-15 12:30")),
    ],
    "flex_planned_dispatches.dst_spring.response": [],
    "flex_planned_dispatches.dst_autumn.response": [],
    "flex_planned_dispatches.empty.response": [],
    "flex_planned_dispatches.null.response": [],
    "flex_planned_dispatches.overlap_unaligned.response": [
        (_t("2026-03-10 10:00"), _t("2026-03-10 11:00")),
    ],
    "flex_planned_dispatches.typical_gmt.response": [
        (_t("2026-01-14 13:00"), _t("2026-01-14 14:00")),
    ],
    "planned_dispatches.legacy.response": [
        (_t("2025-11-03 13:00"), _t("2025-11-03 14:00")),
    ],
}


def plan_from_response(body: Mapping[str, Any], device_id: str = "test-device") -> DispatchPlan:
    """A ``flexPlannedDispatches`` or legacy ``plannedDispatches`` answer as a plan, read by
    the Octopus client's own parsers (so the samples go the way a real plan goes)."""
    data = body.get("data") or {}
    fetched = _t("2026-01-01 00:00")
    if "plannedDispatches" in data:
        return legacy_plan(device_id, data["plannedDispatches"], fetched)
    return flex_plan(device_id, data.get("flexPlannedDispatches"), fetched)
