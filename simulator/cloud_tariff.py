"""The fake Tesla cloud's ``time_of_use_settings``: the tariff a site is given and shows.

Real behaviour (research note §3.3, §7): the endpoint answers ``{"response": {"code": 201,
"message": "Updated"}}`` even to a schedule with a gap, and the app then says the schedule
"should cover exactly 24 hours". So this fake accepts and *flags* (``problems``), or, with
``strict``, refuses with 400 ``invalid_field``. ``site_info`` then shows the stored
``tariff_content_v2`` and ``tou_settings.optimization_strategy``; ``lag`` makes that many
reads still show the previous tariff (the cloud applies changes late, §4.1).

The coverage check here is the fake's own, deliberately simpler than the tool's
(``consumers.tariff.check``): omitted period fields read as 0, as Tesla's reads show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["TariffStore", "coverage_problems"]

_FIELDS = ("fromDayOfWeek", "toDayOfWeek", "fromHour", "fromMinute", "toHour", "toMinute")
_WEEK = 7 * 1440


def _minutes(period: Mapping[str, Any]) -> list[int]:
    p = {name: int(period.get(name, 0)) for name in _FIELDS}
    start = p["fromHour"] * 60 + p["fromMinute"]
    end = p["toHour"] * 60 + p["toMinute"]
    length = end - start if end > start else 1440 - start + end
    days = [
        (p["fromDayOfWeek"] + i) % 7 for i in range((p["toDayOfWeek"] - p["fromDayOfWeek"]) % 7 + 1)
    ]
    return [(day * 1440 + start + i) % _WEEK for day in days for i in range(length)]


def coverage_problems(tariff: Mapping[str, Any]) -> list[str]:
    """What the app would complain about in one tariff (buy or sell): gaps, overlaps, periods
    without a price."""
    problems = []
    energy = tariff.get("energy_charges") or {}
    for name, season in (tariff.get("seasons") or {}).items():
        tou = (season or {}).get("tou_periods")
        if not season or not tou:
            continue
        count = [0] * _WEEK
        for period_name, entry in tou.items():
            for period in entry.get("periods") or []:
                for minute in _minutes(period):
                    count[minute] += 1
            if period_name not in ((energy.get(name) or {}).get("rates") or {}):
                problems.append(f"{name}.{period_name} has no price")
        if any(c == 0 for c in count):
            problems.append("time of use schedule should cover exactly 24 hours")
        if any(c > 1 for c in count):
            problems.append("time of use periods overlap")
    return problems


@dataclass
class TariffStore:
    """One site's tariff settings."""

    strict: bool = False
    lag: int = 0
    tou_settings: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    uploads: int = 0

    def shown(self) -> dict[str, Any]:
        """The keys ``site_info`` adds: the tariff and the optimisation strategy."""
        settings = self.tou_settings
        if self.lag > 0:
            self.lag -= 1
            settings = self.previous
        if not settings:
            return {}
        strategy = settings.get("optimization_strategy", "economics")
        return {
            "tariff_content_v2": settings.get("tariff_content_v2"),
            "tou_settings": {"optimization_strategy": strategy, "schedule": []},
        }

    async def handle(self, request: web.Request) -> web.Response:
        """``POST .../time_of_use_settings``."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        settings = body.get("tou_settings") if isinstance(body, dict) else None
        tariff = settings.get("tariff_content_v2") if isinstance(settings, dict) else None
        if not isinstance(settings, dict) or not isinstance(tariff, dict):
            answer = {"response": None, "error": "invalid_field", "error_description": ""}
            return web.json_response(answer, status=400)
        problems = coverage_problems(tariff)
        sell = tariff.get("sell_tariff")
        if isinstance(sell, dict):
            problems += [f"sell: {problem}" for problem in coverage_problems(sell)]
        if problems and self.strict:
            answer = {"response": None, "error": "invalid_field", "error_description": problems[0]}
            return web.json_response(answer, status=400)
        self.previous, self.tou_settings, self.problems = (
            self.tou_settings,
            dict(settings),
            problems,
        )
        self.uploads += 1
        return web.json_response({"response": {"code": 201, "message": "Updated"}})
