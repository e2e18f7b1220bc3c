"""The console's ``--direct`` feed: the gateway itself instead of the bus.

It feeds the same :class:`~powerwall_bus.consumers.display.state.DisplayState` with the
same bytes a poller publishes, so the direct mode is judged, ordered and shown exactly as
bus data is; only the transport differs.
"""

from __future__ import annotations

import logging
import threading
import time

from powerwall_bus.consumers.display.state import DisplayState
from powerwall_bus.shared.errors import GatewayError
from powerwall_bus.shared.gateway.client import GatewayClient
from powerwall_bus.shared.messages import Reading, RunSequence, reading_message
from powerwall_bus.shared.settings import GatewaySettings
from powerwall_bus.shared.threads import FatalHandler, guarded

_LOGGER = logging.getLogger(__name__)

#: Seconds between direct reads: gentle, as this client comes on top of any poller.
DIRECT_INTERVAL = 5.0
_DIRECT_PATHS = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
)
_ONCE_PATHS = ("/api/operation",)


class DirectSource:
    """The display state fed by reading the gateway every :data:`DIRECT_INTERVAL` seconds."""

    def __init__(
        self,
        state: DisplayState,
        gateway: GatewaySettings,
        trusted_user: str,
        on_fatal: FatalHandler,
    ) -> None:
        self._state = state
        self._user = trusted_user  # the deliveries are ours: judged as the poller's
        self._client = GatewayClient(gateway)
        self._name = gateway.name
        self._sequence = RunSequence()
        self._stop = threading.Event()
        self._problem: str | None = None
        self._thread = threading.Thread(
            target=guarded(self._run, "console-direct", on_fatal), daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        state = self._state
        state.bus_connected = True  # no broker in this mode: never "broker away"
        pending_once = list(_ONCE_PATHS)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if not self._client.din:
                    self._client.get_status()
                for path in (*_DIRECT_PATHS, *pending_once):
                    self._feed(path)
                pending_once = []
                self._say(None)
            except GatewayError as exc:
                self._say(str(exc))
            self._stop.wait(max(0.0, DIRECT_INTERVAL - (time.monotonic() - started)))
        self._client.close()

    def _feed(self, path: str) -> None:
        payload = self._client.get_json(path)
        reading = Reading(path, time.time(), self._client.din or "unknown", payload)
        message = reading_message(reading, self._name, self._sequence)
        self._state.deliver(message.type, message.body, user_id=self._user, headers=message.headers)

    def _say(self, problem: str | None) -> None:
        """One log line per change of the gateway's answer."""
        if problem != self._problem:
            if problem:
                _LOGGER.warning("reading the gateway failed: %s", problem)
            else:
                _LOGGER.info("reading the gateway directly every %.0f s", DIRECT_INTERVAL)
            self._problem = problem

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
