"""A ``poller.status`` payload as ``schema/messages/poller-status.json`` describes it (tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def poller_status(din: str, cooldown: dt.datetime | None = None) -> dict[str, Any]:
    """A poller.status payload as poller-status.json describes it."""
    now = dt.datetime.now(dt.UTC)
    return {
        "started": _iso(now - dt.timedelta(seconds=90)),
        "uptime_s": 90.5,
        "gateway_state": "cooldown" if cooldown else "ok",
        "firmware": "23.12.10 8f14e45f",
        "din": din,
        "cooldown_until": None if cooldown is None else _iso(cooldown),
        "logins": 2,
        "broker_connected": True,
        "buffer": {"queued": 3, "capacity": 21600, "dropped": 1},
        "publish_latency_ms": {"p50": 4.0, "p99": 25.0, "samples": 100},
        "endpoints": {
            "/api/meters/aggregates": {
                "interval": 5,
                "state": "ok",
                "requests": 120,
                "last_success": _iso(now),
                "last_error": "HTTP503",
                "last_error_at": _iso(now - dt.timedelta(seconds=30)),
                "errors": {"HTTP503": 2, "ReadTimeout": 1},
                "consecutive_errors": 0,
            },
            "/api/system_status/soe": {
                "interval": 5,
                "state": "failing",
                "requests": 118,
                "last_success": None,
                "last_error": "ConnectTimeout",
                "last_error_at": _iso(now),
                "errors": {"ConnectTimeout": 4},
                "consecutive_errors": 4,
            },
        },
    }
