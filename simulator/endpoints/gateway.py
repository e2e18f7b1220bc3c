""":class:`SimulatedGateway`: the pure core behind the simulator's HTTPS shell.

It answers ``get(path)`` with a :class:`~simulator.endpoints.base.Reply` and knows nothing
about TLS, sessions or faults. Which path renders which body is the table of
:mod:`~simulator.endpoints.routes`; this class holds the site model, the runtime switches
(firmware, grid, site controller) and the reply cache, because pollers ask for the same
bodies every second: live bodies are cached per snapshot step, the others until a switch
changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from powerwall_bus.shared.gateway.vitals import VitalsDevice
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.simulator.endpoints import vitals
from powerwall_bus.simulator.endpoints.base import (
    NOT_FOUND,
    SITE_CONTROLLER_STOPPED,
    Reply,
    SiteFacts,
    Switches,
)
from powerwall_bus.simulator.endpoints.routes import build_routes
from powerwall_bus.simulator.model import SiteModel
from powerwall_bus.simulator.site import Firmware, SiteIdentity, SiteOptions
from powerwall_bus.simulator.snapshot import Snapshot


class SimulatedGateway:
    """Answers every GET the real gateway answers, from one simulated site.

    The switches (firmware, grid, site controller) may be flipped from any thread while
    requests are being answered; each request sees one consistent set of them.
    """

    def __init__(self, options: SiteOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self._model = SiteModel(options, clock)
        self.identity: SiteIdentity = self._model.identity
        self._switches = Switches(Firmware.parse(options.firmware), sitemaster_running=True)
        self._switch_lock = threading.Lock()
        self._cache: dict[str, tuple[object, Switches, Reply]] = {}
        self._facts = SiteFacts.at_start(options, self.identity, self._model.snapshot())
        self._routes = build_routes(self._facts)

    # ------------------------------------------------------------------ answering

    @property
    def paths(self) -> frozenset[str]:
        """Every GET path that answers 200 with the current firmware (502 while stopped)."""
        switches = self._switches
        return frozenset(
            path for path, route in self._routes.items() if route.ok and route.available(switches)
        )

    def get(self, path: str) -> Reply:
        """Answer ``GET path``; a query string is ignored (pyPowerwall strips it too)."""
        path = path.partition("?")[0]
        switches = self._switches
        route = self._routes.get(path)
        if route is None or not route.available(switches):
            return NOT_FOUND
        if route.stops_with_controller and not switches.sitemaster_running:
            return SITE_CONTROLLER_STOPPED
        snap = self._model.snapshot() if route.live else None
        cached = self._cache.get(path)
        if cached is not None and cached[0] is snap and cached[1] is switches:
            return cached[2]
        reply = route.render(snap or self._model.snapshot(), switches)
        self._cache[path] = (snap, switches, reply)
        return reply

    def snapshot(self) -> Snapshot:
        """The model's current state (the one the next live body will be rendered from)."""
        return self._model.snapshot()

    def vitals_devices(self) -> list[VitalsDevice]:
        """The devices ``/api/devices/vitals`` encodes, for the current snapshot."""
        return vitals.devices(self._facts, self._model.snapshot(), self._switches.firmware)

    # ------------------------------------------------------------------ switches

    def set_firmware(self, version: str) -> None:
        """Report another firmware, e.g. "23.44.0 9064fc6a" (vitals then answer 404)."""
        firmware = Firmware.parse(version)
        with self._switch_lock:
            self._switches = Switches(firmware, self._switches.sitemaster_running)

    def set_grid_connected(self, connected: bool) -> None:
        """Lose or restore the utility grid (reconnecting passes SystemTransitionToGrid)."""
        self._model.set_grid_connected(connected)

    def set_sitemaster_running(self, running: bool) -> None:
        """Stop or start the site controller: stopped, live endpoints answer 502."""
        with self._switch_lock:
            self._model.set_site_controller_running(running)
            self._switches = Switches(self._switches.firmware, running)

    def set_manual_backup(self, event: BackupEvent | None) -> None:
        """Set or clear Max Backup (signed TEDAPI): the Powerwalls hold their charge in it."""
        self._model.set_manual_backup(event)

    @property
    def manual_backup(self) -> BackupEvent | None:
        """The manual backup event set, if any (also once it has ended)."""
        return self._model.manual_backup

    @property
    def firmware(self) -> str:
        """The ``/api/status`` version string, e.g. "23.12.10 8f14e45f"."""
        return self._switches.firmware.version

    @property
    def din(self) -> str:
        """The gateway DIN."""
        return self.identity.gateway_din

    @property
    def grid_connected(self) -> bool:
        """False while the grid is down."""
        return self._model.grid_connected

    @property
    def sitemaster_running(self) -> bool:
        """Whether the site controller runs."""
        return self._switches.sitemaster_running
