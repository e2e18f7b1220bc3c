"""``pwbus mysql``: run the history writer until SIGTERM; ``--check`` for a health probe.

SIGTERM or Ctrl-C: the batch in memory is written once more if the database answers,
otherwise left unacknowledged for the broker to deliver again; the process exits 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
from types import FrameType

from powerwall_bus.consumers.mysql.db import Database
from powerwall_bus.consumers.mysql.writer import Writer, WriterConfig
from powerwall_bus.shared.errors import DatabaseError, DatabaseUnavailable
from powerwall_bus.shared.settings import MysqlSettings

_LOGGER = logging.getLogger(__name__)

_NEWEST_METER_ROW = (
    "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(ts), UTC_TIMESTAMP(3)) / 1e6 FROM meter_readings"
)


def run_writer(config: WriterConfig) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop (errors propagate as PwbusError)."""
    writer = Writer(config)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not writer.stopping:
            _LOGGER.info("received %s: finishing the current batch", signal.Signals(signum).name)
        writer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    writer.run()
    return 0


def newest_meter_age(settings: MysqlSettings) -> float | None:
    """Seconds since the newest meter_readings row (None: no rows at all)."""
    database = Database(settings, timeout=5.0)
    try:
        age = database.scalar(_NEWEST_METER_ROW, "checking the newest meter reading")
    finally:
        database.close()
    return None if age is None else float(age)


def check_health(settings: MysqlSettings, max_age: float) -> int:
    """The container health probe: 0 when meter rows newer than ``max_age`` s are stored.

    It says "history is being written", which needs the poller, the broker, the writer and
    the database alike; the one-line answer on stdout/stderr says which part is missing.
    """
    try:
        age = newest_meter_age(settings)
    except (DatabaseUnavailable, DatabaseError) as exc:
        sys.stderr.write(f"unhealthy: {exc}\n")
        return 1
    if age is None:
        sys.stderr.write(f"unhealthy: no meter readings stored yet in {settings.safe_url}\n")
        return 1
    if age > max_age:
        sys.stderr.write(
            f"unhealthy: the newest meter reading in {settings.safe_url} is "
            f"{dt.timedelta(seconds=round(age))} old (limit {max_age:g} s)\n"
        )
        return 1
    sys.stdout.write(f"healthy: newest meter reading {age:.1f} s old\n")
    return 0
