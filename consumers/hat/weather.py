"""The weather icon: Open-Meteo's current weather, mapped to one of the display's icons.

Off by default (``hat.weather``). One request per ``hat.weather_interval`` (15 min) at most;
a failure of any kind (no network, an error status, a body that is not the expected JSON)
only hides the icon, is logged once when it starts and once when it ends, and is asked
again after :data:`RETRY_AFTER` seconds. The mapping follows Tesla-API's: wind of 20 km/h
and more shows wind; WMO code 0 clear, 1-2 partly cloudy, 3 cloudy, 45-48 fog, 51-67 and
80-82 rain, 71-77 and 85-86 snow, 95-99 cloudy, anything else the error icon. Its night
fallbacks to "cloudy" for wind, rain and snow existed because its icon strips were daytime
pictures; ours show no sun, so they are shown at night as well.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from powerwall_bus.shared.settings import HatSettings

__all__ = ["RETRY_AFTER", "WIND_KMH", "Weather", "icon_name", "parse_current"]

_LOGGER = logging.getLogger(__name__)

#: From this wind speed (km/h) the icon is wind, whatever the sky.
WIND_KMH = 20.0
#: Seconds before a failed request is tried again.
RETRY_AFTER = 60.0


def icon_name(code: int, wind_kmh: float, is_day: bool) -> str:
    """The icon for a WMO weather code, the wind speed and day or night."""
    if wind_kmh >= WIND_KMH:
        return "wind"
    part = "day" if is_day else "night"
    if code == 0:
        return f"clear-{part}"
    if code in (1, 2):
        return f"partly-cloudy-{part}"
    if code == 3 or 95 <= code <= 99:
        return "cloudy"
    if 45 <= code <= 48:
        return "fog"
    if 51 <= code <= 67 or 80 <= code <= 82:
        return "rain"
    if 71 <= code <= 77 or code in (85, 86):
        return "snow"
    return "error"


@dataclass(frozen=True)
class Current:
    """The part of Open-Meteo's answer the icon needs."""

    code: int
    wind_kmh: float
    is_day: bool


def parse_current(body: Any) -> Current:
    """``current.weather_code``, ``wind_speed_10m`` (or the older ``windspeed``) and
    ``is_day``; ValueError when the body is not that."""
    current = body.get("current") if isinstance(body, dict) else None
    if not isinstance(current, dict):
        raise ValueError("no 'current' object in the answer")
    code = current.get("weather_code")
    wind = current.get("wind_speed_10m", current.get("windspeed"))
    is_day = current.get("is_day")
    numbers = (code, wind, is_day)
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers):
        raise ValueError("weather_code, wind speed or is_day missing or not a number")
    return Current(int(code), float(wind), bool(is_day))  # type: ignore[arg-type]


class Weather:
    """The current icon name, refreshed at most every ``hat.weather_interval`` seconds."""

    def __init__(
        self,
        hat: HatSettings,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hat = hat
        self._session = session or requests.Session()
        self._clock = clock
        self._due = 0.0  # monotonic time of the next request
        self._failure: str | None = None
        self.icon: str | None = None
        self.requests = 0

    def refresh(self) -> str | None:
        """Ask Open-Meteo when the cached answer is due; the icon to show (None: none)."""
        now = self._clock()
        if now < self._due:
            return self.icon
        self.requests += 1
        try:
            current = parse_current(self._fetch())
        except (requests.RequestException, ValueError) as exc:
            self._failed(exc)
            self._due = now + min(RETRY_AFTER, self._hat.weather_interval)
            return None
        icon = icon_name(current.code, current.wind_kmh, current.is_day)
        if self._failure is not None:
            _LOGGER.info("weather answers again: %s", icon)
        elif icon != self.icon:
            _LOGGER.info("weather: %s", icon)
        self._failure = None
        self.icon = icon
        self._due = now + self._hat.weather_interval
        return icon

    def _fetch(self) -> Any:
        url = self._hat.weather_url.rstrip("/") + "/v1/forecast"
        latitude, longitude = self._hat.coordinates or (0.0, 0.0)
        params: dict[str, str | float] = {
            "latitude": latitude,
            "longitude": longitude,
            "current": "weather_code,wind_speed_10m,is_day",
            "wind_speed_unit": "kmh",
            "timezone": "auto",
            "timeformat": "unixtime",
        }
        response = self._session.get(url, params=params, timeout=self._hat.weather_timeout)
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        return response.json()

    def _failed(self, exc: Exception) -> None:
        """Hide the icon; one WARNING when failing starts or its reason changes."""
        text = type(exc).__name__ if isinstance(exc, requests.RequestException) else str(exc)
        if text != self._failure:
            _LOGGER.warning("weather unavailable (%s): the icon is hidden", text[:120])
        self._failure = text
        self.icon = None

    def close(self) -> None:
        self._session.close()
