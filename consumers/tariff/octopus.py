"""Octopus tariffs as :class:`~.rates.OctopusTariff`: the account's agreements (GraphQL) or a
tariff's published unit rates (REST, for people without an account query).

GraphQL: the account's current electricity agreements (``includeInactive: false,
excludeFuture: true``), each tariff by its type: ``StandardTariff`` (one ``unitRate``),
``DayNightTariff`` (``dayRate``, ``nightRate``), ``ThreeRateTariff`` (``dayRate``,
``nightRate``, ``offPeakRate``), ``HalfHourlyTariff`` (``unitRates`` with their times).
Prices are pence including VAT; ``isExport`` tells the export agreement from the import.
Octopus does not say WHEN a day-night or three-rate tariff's night is (it depends on the
meter), so those need the user's windows (``--window night=00:30-07:30``).

REST: ``/v1/products/{product}/electricity-tariffs/{tariff}/standard-unit-rates/`` and
``standing-charges/``, public, paginated (follow ``next``), newest first, possibly with
direct-debit and non-direct-debit prices (the direct-debit ones are kept).

The parsing is pure; :class:`OctopusRates` is the I/O and the one place where requests'
errors and HTTP statuses become :class:`~powerwall_bus.shared.errors.OctopusError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import requests

from powerwall_bus.consumers.tariff.rates import LONDON, OctopusTariff, Rate, parse_instant
from powerwall_bus.shared.errors import (
    OctopusApiError,
    OctopusAuthError,
    OctopusError,
    OctopusUnreachable,
)

__all__ = [
    "AGREEMENTS_QUERY",
    "OctopusRates",
    "parse_windows",
    "product_code",
    "rest_base",
    "tariff_from_rest",
    "tariffs_from_account",
]

_TARIFF_FIELDS = "displayName tariffCode isExport standingCharge"
AGREEMENTS_QUERY = f"""query Agreements($accountNumber: String!) {{
  getTariff: account(accountNumber: $accountNumber) {{
    properties {{
      electricityMeterPoints {{
        meters(includeInactive: false) {{
          meterPoint {{
            agreements(includeInactive: false, excludeFuture: true) {{
              tariff {{
                __typename
                ... on StandardTariff {{ {_TARIFF_FIELDS} unitRate }}
                ... on DayNightTariff {{ {_TARIFF_FIELDS} dayRate nightRate }}
                ... on ThreeRateTariff {{ {_TARIFF_FIELDS} dayRate nightRate offPeakRate }}
                ... on HalfHourlyTariff {{
                  {_TARIFF_FIELDS} unitRates {{ value validFrom validTo rateType }}
                }}
              }}
            }}
          }}
        }}
      }}
    }}
  }}
}}"""

#: The windows a tariff type needs from the user, by its rate fields.
WINDOWED = {"DayNightTariff": ("night",), "ThreeRateTariff": ("night", "off_peak")}
_WINDOW = re.compile(r"^(night|off_peak)=(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_TARIFF_CODE = re.compile(r"^E-(1R|2R)-(.+)-([A-P])$")
REACH_DAYS = 9  # a windowed tariff is laid out this many days each side of today


def parse_windows(texts: Sequence[str]) -> dict[str, tuple[time, time]]:
    """``night=00:30-07:30`` (local wall clock, half-hour steps) to ``{"night": (start, end)}``;
    ValueError for anything else."""
    windows: dict[str, tuple[time, time]] = {}
    for text in texts:
        match = _WINDOW.match(text.strip())
        if not match:
            raise ValueError(f"--window {text!r}: use night=HH:MM-HH:MM or off_peak=HH:MM-HH:MM")
        name, h1, m1, h2, m2 = match.groups()
        try:
            start, end = time(int(h1) % 24, int(m1)), time(int(h2) % 24, int(m2))
        except ValueError:
            raise ValueError(f"--window {text!r}: not a time of day") from None
        if start.minute % 30 or end.minute % 30 or start == end:
            raise ValueError(f"--window {text!r}: half-hour times, start before end")
        windows[name] = (start, end)
    return windows


def _in(window: tuple[time, time], local: datetime) -> bool:
    start, end = window
    now = local.time()
    return start <= now < end if start < end else now >= start or now < end


def _laid_out(
    prices: Mapping[str, float], windows: Mapping[str, tuple[time, time]], today: date
) -> tuple[Rate, ...]:
    """Half-hourly rates for days around ``today``: a window's price inside it, else day's."""
    moment = datetime.combine(today - timedelta(days=REACH_DAYS), time(0), tzinfo=LONDON)
    moment = moment.astimezone(UTC)
    end = moment + timedelta(days=2 * REACH_DAYS + 1)
    rates = []
    while moment < end:
        local = moment.astimezone(LONDON)
        price = prices["day"]
        for name in ("off_peak", "night"):  # an off-peak window inside the night wins
            if name in windows and name in prices and _in(windows[name], local):
                price = prices[name]
                break
        rates.append(Rate(moment, moment + timedelta(minutes=30), price))
        moment += timedelta(minutes=30)
    return tuple(rates)


def _number(tariff: Mapping[str, Any], key: str) -> float:
    value = tariff.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise OctopusApiError(f"Octopus tariff {tariff.get('tariffCode')} has no {key}")
    try:
        return float(value)
    except ValueError:
        raise OctopusApiError(
            f"Octopus tariff {tariff.get('tariffCode')}: {key} is not a number"
        ) from None


def tariff_from_graphql(
    tariff: Mapping[str, Any], windows: Mapping[str, tuple[time, time]], today: date
) -> OctopusTariff:
    """One agreement's ``tariff`` object as dated rates."""
    kind = tariff.get("__typename")
    code = str(tariff.get("tariffCode") or "")
    name = str(tariff.get("displayName") or code)
    is_export = bool(tariff.get("isExport"))
    standing = 0.0 if tariff.get("standingCharge") is None else _number(tariff, "standingCharge")

    def made(kind_name: str, rates: tuple[Rate, ...], notes: tuple[str, ...] = ()) -> OctopusTariff:
        return OctopusTariff(code, name, kind_name, is_export, rates, standing, notes)

    if kind == "StandardTariff":
        since = datetime(2000, 1, 1, tzinfo=UTC)
        return made("standard", (Rate(since, None, _number(tariff, "unitRate")),))
    if kind == "HalfHourlyTariff":
        rates: list[Rate] = []
        notes: tuple[str, ...] = ()
        items = [i for i in tariff.get("unitRates") or [] if isinstance(i, Mapping)]
        # Four-rate Intelligent Go lists the car's own (EV_DEVICE) rates beside the home's
        # (STANDARD): the house pays the standard ones, so only those price the battery.
        home = [i for i in items if i.get("rateType") in (None, "STANDARD")]
        for item in home:
            try:
                start = parse_instant(str(item["validFrom"]))
                end = parse_instant(str(item["validTo"])) if item.get("validTo") else None
                rates.append(Rate(start, end, float(item["value"])))
            except (KeyError, TypeError, ValueError):
                raise OctopusApiError(f"Octopus tariff {code}: a unit rate is unreadable") from None
        if len(home) < len(items):
            notes = (
                f"{code}: the car's own (EV_DEVICE) rates are left out; the home pays the others",
            )
        if not rates:
            raise OctopusApiError(f"Octopus tariff {code} came without unit rates")
        return made("half-hourly", tuple(rates), notes)
    if kind in WINDOWED:
        needed = [name for name in WINDOWED[kind] if name not in windows]
        if needed:
            example = {"night": "night=00:30-07:30", "off_peak": "off_peak=13:00-16:00"}
            raise ValueError(
                f"{code} is a {kind}: Octopus does not say when its "
                f"{' and '.join(needed)} hours are; give "
                + " ".join(f"--window {example[n]}" for n in needed)
                + " (your meter's hours, UK local time)"
            )
        prices = {"day": _number(tariff, "dayRate"), "night": _number(tariff, "nightRate")}
        if kind == "ThreeRateTariff":
            prices["off_peak"] = _number(tariff, "offPeakRate")
        used = ", ".join(
            f"{n} {w[0]:%H:%M}-{w[1]:%H:%M}" for n, w in windows.items() if n in prices
        )
        notes = (f"{code}: {used} (Europe/London) from --window; day price otherwise",)
        kind_name = "day-night" if kind == "DayNightTariff" else "three-rate"
        return made(kind_name, _laid_out(prices, windows, today), notes)
    raise OctopusApiError(f"Octopus tariff {code} is a {kind}, which this tool does not read")


def tariffs_from_account(
    data: Mapping[str, Any], windows: Mapping[str, tuple[time, time]], today: date
) -> tuple[OctopusTariff, OctopusTariff | None]:
    """The import tariff and the export one (None without an export agreement)."""
    account = data.get("getTariff")
    properties = account.get("properties") if isinstance(account, Mapping) else None
    if not isinstance(properties, list) or not properties:
        raise OctopusApiError("Octopus answered without the account's properties")
    if len(properties) > 1:
        raise OctopusApiError(
            f"the account has {len(properties)} properties; this tool reads one (use --tariff)"
        )
    found = []
    for point in properties[0].get("electricityMeterPoints") or []:
        for meter in point.get("meters") or []:
            meter_point = meter.get("meterPoint") if isinstance(meter, Mapping) else None
            for agreement in (meter_point or {}).get("agreements") or []:
                tariff = agreement.get("tariff") if isinstance(agreement, Mapping) else None
                if isinstance(tariff, Mapping):
                    found.append(tariff)
    imports = {t.get("tariffCode"): t for t in found if not t.get("isExport")}
    exports = {t.get("tariffCode"): t for t in found if t.get("isExport")}
    if len(imports) != 1:
        raise OctopusApiError(
            f"the account has {len(imports)} current import agreements; one is needed "
            "(use --tariff CODE)"
        )
    if len(exports) > 1:
        raise OctopusApiError(f"the account has {len(exports)} current export agreements")
    buy = tariff_from_graphql(next(iter(imports.values())), windows, today)
    sell = tariff_from_graphql(next(iter(exports.values())), windows, today) if exports else None
    return buy, sell


def product_code(tariff_code: str) -> str:
    """``E-1R-AGILE-24-10-01-C`` -> ``AGILE-24-10-01``; ValueError for other codes."""
    match = _TARIFF_CODE.match(tariff_code)
    if not match:
        raise ValueError(f"{tariff_code!r} is not an electricity tariff code (E-1R-...-C)")
    if match.group(1) == "2R":
        raise ValueError(
            f"{tariff_code} is a day-night (E-2R) tariff: its hours are not published; use "
            "the account query with --window night=HH:MM-HH:MM"
        )
    return match.group(2)


def rest_base(graphql_url: str) -> str:
    """The REST base beside the GraphQL endpoint (both under ``/v1/`` on api.octopus.energy)."""
    head, _, _ = graphql_url.partition("graphql")
    return head if head.endswith("/") else head + "/"


def _direct_debit(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    kept = [r for r in results if r.get("payment_method") != "NON_DIRECT_DEBIT"]
    return kept or list(results)


def tariff_from_rest(
    code: str,
    results: Sequence[Mapping[str, Any]],
    standing: Sequence[Mapping[str, Any]],
    *,
    is_export: bool,
    now: datetime,
) -> OctopusTariff:
    """REST unit rates (any order, both payment methods) as dated rates."""
    rates = []
    for item in _direct_debit(results):
        try:
            start = parse_instant(str(item["valid_from"]))
            end = parse_instant(str(item["valid_to"])) if item.get("valid_to") else None
            rates.append(Rate(start, end, float(item["value_inc_vat"])))
        except (KeyError, TypeError, ValueError):
            raise OctopusApiError(f"Octopus tariff {code}: a unit rate is unreadable") from None
    if not rates:
        raise OctopusApiError(f"Octopus has no unit rates for {code} in that period")
    charge = 0.0
    current = [
        s
        for s in _direct_debit(standing)
        if parse_instant(str(s.get("valid_from"))) <= now
        and (not s.get("valid_to") or now < parse_instant(str(s["valid_to"])))
    ]
    if current:
        charge = float(current[0].get("value_inc_vat") or 0.0)
    kind = "half-hourly" if len({r.price for r in rates}) > 1 or len(rates) > 2 else "standard"
    return OctopusTariff(
        code, code, kind, is_export, tuple(sorted(rates, key=lambda r: r.start)), charge
    )


class OctopusRates:
    """Octopus' public REST product API over one session (no key: those paths are public)."""

    def __init__(self, base: str, *, timeout: float = 20.0, page_size: int = 1500) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self._timeout = timeout
        self._page_size = page_size
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "powerwall-bus"})
        self.requests = 0

    def close(self) -> None:
        self._session.close()

    def _get(self, url: str, params: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
        self.requests += 1
        try:
            response = self._session.get(url, params=params, timeout=self._timeout)
        except requests.Timeout:
            raise OctopusUnreachable(f"Octopus did not answer within {self._timeout:g} s") from None
        except requests.RequestException as exc:
            raise OctopusUnreachable(f"cannot reach Octopus ({type(exc).__name__})") from None
        status = response.status_code
        if status == 404:
            raise OctopusApiError(f"Octopus does not know {what} (HTTP 404)")
        if status in (401, 403):
            raise OctopusAuthError(f"Octopus refused the request for {what} (HTTP {status})")
        if status >= 500 or status == 429:
            raise OctopusUnreachable(f"Octopus answered HTTP {status} for {what}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if status != 200 or not isinstance(body, dict):
            raise OctopusApiError(f"Octopus answered HTTP {status} without JSON for {what}")
        return body

    def _pages(self, path: str, params: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        url: str | None = self.base + path
        query: Mapping[str, Any] | None = {**params, "page_size": self._page_size}
        for _ in range(100):  # a bound, not a limit anyone meets: 150 000 rates
            assert url is not None
            body = self._get(url, query, what)
            items = body.get("results")
            if not isinstance(items, list):
                raise OctopusApiError(f"Octopus answered without results for {what}")
            results.extend(item for item in items if isinstance(item, dict))
            url, query = body.get("next"), None  # `next` carries every parameter
            if not url:
                return results
        raise OctopusError(f"Octopus kept paging {what} past 100 pages")

    def tariff(
        self, code: str, *, is_export: bool, start: datetime, end: datetime, now: datetime
    ) -> OctopusTariff:
        """The tariff's unit rates from ``start`` to ``end`` and its standing charge."""
        product = product_code(code)
        path = f"products/{product}/electricity-tariffs/{code}/"
        period = {
            "period_from": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "period_to": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        results = self._pages(path + "standard-unit-rates/", period, f"tariff {code}")
        standing: list[dict[str, Any]] = []
        if not is_export:
            standing = self._pages(
                path + "standing-charges/", period, f"the standing charge of {code}"
            )
        return tariff_from_rest(code, results, standing, is_export=is_export, now=now)
