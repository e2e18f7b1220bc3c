"""The weather icon: the WMO code mapping, and the Open-Meteo client against a local fake
server (its query, the 15-minute cache, and failures that only hide the icon)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from powerwall_bus.consumers.hat.weather import (
    RETRY_AFTER,
    Weather,
    icon_name,
    parse_current,
)
from powerwall_bus.shared.settings import HatSettings


@pytest.mark.parametrize(
    ("code", "wind", "day", "icon"),
    [
        (0, 5, True, "clear-day"),
        (0, 5, False, "clear-night"),
        (1, 0, True, "partly-cloudy-day"),
        (2, 0, False, "partly-cloudy-night"),
        (3, 0, True, "cloudy"),
        (45, 0, True, "fog"),
        (48, 0, False, "fog"),
        (51, 0, True, "rain"),
        (67, 0, False, "rain"),  # ours shows rain at night too
        (80, 0, True, "rain"),
        (82, 0, True, "rain"),
        (71, 0, True, "snow"),
        (77, 0, False, "snow"),
        (85, 0, True, "snow"),
        (86, 0, True, "snow"),
        (95, 0, True, "cloudy"),
        (99, 0, True, "cloudy"),
        (0, 20, True, "wind"),  # wind of 20 km/h beats the sky
        (61, 35, False, "wind"),
        (0, 19.9, True, "clear-day"),
        (4, 0, True, "error"),
        (68, 0, True, "error"),
        (100, 0, True, "error"),
    ],
)
def test_weather_code_to_icon(code: int, wind: float, day: bool, icon: str) -> None:
    assert icon_name(code, wind, day) == icon


def test_parse_current_reads_both_wind_names_and_refuses_the_rest() -> None:
    new = {"current": {"weather_code": 3, "wind_speed_10m": 12.5, "is_day": 1}}
    old = {"current": {"weather_code": 3, "windspeed": 12.5, "is_day": 0}}
    assert parse_current(new).wind_kmh == 12.5 and parse_current(new).is_day
    assert parse_current(old).wind_kmh == 12.5 and not parse_current(old).is_day
    bads: list[Any] = [{}, [], {"current": {"weather_code": "3", "windspeed": 1, "is_day": 1}}]
    for bad in bads:
        with pytest.raises(ValueError):
            parse_current(bad)


class FakeOpenMeteo:
    """A local HTTP server answering /v1/forecast as told, keeping every query."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.status = 200
        self.body: Any = {"current": {"weather_code": 61, "wind_speed_10m": 5.0, "is_day": 1}}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                outer.queries.append({"path": [parts.path], **parse_qs(parts.query)})
                raw = outer.body if isinstance(outer.body, bytes) else json.dumps(outer.body)
                data = raw if isinstance(raw, bytes) else raw.encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def open_meteo() -> Iterator[FakeOpenMeteo]:
    server = FakeOpenMeteo()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _weather(url: str, clock: Clock) -> Weather:
    hat = HatSettings(weather=True, location="51.5, -0.12", weather_url=url)
    return Weather(hat, clock=clock)


def test_asks_open_meteo_once_per_15_minutes(open_meteo: FakeOpenMeteo) -> None:
    clock = Clock()
    weather = _weather(open_meteo.url + "/", clock)
    assert weather.refresh() == "rain"
    (query,) = open_meteo.queries
    assert query["path"] == ["/v1/forecast"]
    assert (query["latitude"], query["longitude"]) == (["51.5"], ["-0.12"])
    assert set(query["current"][0].split(",")) == {"weather_code", "wind_speed_10m", "is_day"}
    assert query["timeformat"] == ["unixtime"]
    open_meteo.body = {"current": {"weather_code": 0, "wind_speed_10m": 1.0, "is_day": 0}}
    clock.now += 899
    assert weather.refresh() == "rain"  # cached
    assert len(open_meteo.queries) == 1
    clock.now += 1
    assert weather.refresh() == "clear-night"
    assert len(open_meteo.queries) == 2
    weather.close()


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, {"error": True}), (200, b"<html>not json</html>"), (200, {"current": {}})],
)
def test_a_failure_hides_the_icon_logs_once_and_retries_later(
    open_meteo: FakeOpenMeteo, caplog: pytest.LogCaptureFixture, status: int, body: Any
) -> None:
    clock = Clock()
    weather = _weather(open_meteo.url, clock)
    assert weather.refresh() == "rain"
    open_meteo.status, open_meteo.body = status, body
    caplog.set_level(logging.INFO, logger="powerwall_bus.consumers.hat.weather")
    caplog.clear()
    for _ in range(3):
        clock.now += 901
        assert weather.refresh() is None
        assert weather.icon is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "icon is hidden" in warnings[0].getMessage()
    asked = len(open_meteo.queries)
    clock.now += RETRY_AFTER - 1
    weather.refresh()
    assert len(open_meteo.queries) == asked  # not before the retry time
    open_meteo.status = 200
    open_meteo.body = {"current": {"weather_code": 71, "windspeed": 2.0, "is_day": 1}}
    clock.now += 1
    assert weather.refresh() == "snow"
    assert "weather answers again: snow" in caplog.messages[-1]
    weather.close()


def test_no_server_at_all_hides_the_icon(caplog: pytest.LogCaptureFixture) -> None:
    closed = FakeOpenMeteo()
    url = closed.url
    closed.close()  # nothing listens there any more
    weather = _weather(url, Clock())
    caplog.set_level(logging.WARNING)
    assert weather.refresh() is None
    assert "ConnectionError" in caplog.messages[0]
    weather.close()
