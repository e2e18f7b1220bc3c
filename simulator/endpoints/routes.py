"""The registration table: every path the simulated gateway answers, and how.

:func:`build_routes` is the one place that maps a path to the function rendering its body
(from the endpoint family modules) and says how the path behaves:

- ``live``: rendered from the current snapshot (cached per simulated step), else only from
  the switches (cached until a switch changes) or a fixed document (encoded once);
- ``stops_with_controller``: answers 502 with an empty body while the site controller is
  stopped, as the real gateway does for its live power data;
- ``ok=False``: answers its recorded error instead of 200 (and is left out of
  :attr:`~simulator.endpoints.gateway.SimulatedGateway.paths`);
- ``available``: whether the path exists on the current firmware (vitals: before 23.44).

A Powerwall 3 (``SiteOptions.powerwall3``) keeps only :data:`POWERWALL3_PATHS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from powerwall_bus.simulator.endpoints import config, meters, powerwalls, system, vitals
from powerwall_bus.simulator.endpoints.base import (
    Reply,
    SiteFacts,
    Switches,
    error_reply,
    json_reply,
)
from powerwall_bus.simulator.snapshot import Snapshot

Renderer = Callable[[Snapshot, Switches], Reply]
LiveBody = Callable[[SiteFacts, Snapshot, Switches], object]
SwitchedBody = Callable[[SiteFacts, Switches], object]


def _always(_: Switches) -> bool:
    return True


@dataclass(frozen=True)
class Route:
    """How one path answers (see the module docstring)."""

    render: Renderer
    live: bool  # depends on the snapshot (else only on the switches)
    stops_with_controller: bool = False  # 502 + empty body while the site controller is stopped
    ok: bool = True  # answers 200 (error routes answer their recorded error instead)
    available: Callable[[Switches], bool] = field(default=_always)


def build_routes(facts: SiteFacts) -> dict[str, Route]:
    """Path -> route for this site (``/api/solar_powerwall`` only with a Powerwall+)."""

    def live(body: LiveBody, *, stops_with_controller: bool = False) -> Route:
        return Route(
            lambda snap, sw: json_reply(body(facts, snap, sw)),
            live=True,
            stops_with_controller=stops_with_controller,
        )

    def switched(body: SwitchedBody) -> Route:
        return Route(lambda _snap, sw: json_reply(body(facts, sw)), live=False)

    def fixed(document: object) -> Route:
        reply = json_reply(document)
        return Route(lambda _snap, _sw: reply, live=False)

    def failing(reply: Reply) -> Route:
        return Route(lambda _snap, _sw: reply, live=False, ok=False)

    def ct_config_error(meter: str) -> Route:
        return failing(
            error_reply(
                500, f"meter type must be Neurio ({meter})", "Unable to get Amp configuration"
            )
        )

    meter_serial = facts.identity.meter_serial_number
    meter_x = f"{meter_serial}synchrometerX"
    meter_y = f"{meter_serial}synchrometerY"
    routes: dict[str, Route] = {
        # live power data: 502 while the site controller is stopped
        "/api/meters/aggregates": live(meters.aggregates, stops_with_controller=True),
        "/api/system_status/soe": live(meters.soe, stops_with_controller=True),
        "/api/system_status/grid_status": live(meters.grid_status, stops_with_controller=True),
        "/api/system_status": live(system.system_status, stops_with_controller=True),
        "/api/system_status/grid_faults": live(system.grid_faults, stops_with_controller=True),
        # status and site
        "/api/status": live(system.status),
        "/api/site_info": live(system.site_info),
        "/api/site_info/site_name": fixed(config.site_name(facts)),
        "/api/sitemaster": switched(system.sitemaster),
        "/api/system/update/status": live(system.update_status),
        # Powerwalls
        "/api/powerwalls": live(powerwalls.powerwalls),
        "/api/powerwalls/status": switched(powerwalls.powerwalls_flags),
        "/api/powerwalls/phase_usages": failing(
            error_reply(500, "no phase information", "Failed getting phase detection information")
        ),
        # meters
        "/api/meters": fixed(meters.meters(facts)),
        "/api/meters/site": live(meters.meters_site),
        "/api/meters/solar": live(meters.meters_solar),
        "/api/meters/readings": live(meters.meters_readings),
        "/api/meters/status": fixed({"status": "", "errors": None}),
        f"/api/meters/{meter_x}/cts": fixed(meters.meter_x_cts()),
        f"/api/meters/{meter_y}/cts": fixed(meters.meter_y_cts(facts)),
        f"/api/meters/{meter_x}/ct_config": ct_config_error("synchrometerX"),
        f"/api/meters/{meter_y}/ct_config": ct_config_error("synchrometerY"),
        "/api/synchrometer/ct_voltage_references": fixed(config.CT_VOLTAGE_REFERENCES),
        # vitals (protobuf): gone from firmware 23.44 on
        "/api/devices/vitals": Route(
            lambda snap, sw: vitals.vitals(facts, snap, sw),
            live=True,
            available=lambda sw: sw.has_vitals,
        ),
        # configuration
        "/api/customer": fixed({"registered": True}),
        "/api/customer/registration": fixed(config.CUSTOMER_REGISTRATION),
        "/api/operation": fixed(config.operation(facts)),
        "/api/solars": fixed(config.solars(facts)),
        "/api/solars/brands": fixed(list(config.SOLAR_BRANDS)),
        "/api/installer": switched(config.installer),
        "/api/networks": fixed(config.networks()),
        # Both are gone (404) on some recent firmware; the pyPowerwall proxy still passes
        # them through, so the simulator serves the shapes recorded on 21.x.
        "/api/system/networks": fixed(config.saved_networks()),
        "/api/site_info/grid_codes": fixed(config.grid_codes()),
        "/api/networks/client_protocols": fixed(config.CLIENT_PROTOCOLS),
        "/api/troubleshooting/problems": fixed({"problems": []}),
        "/api/auth/toggle/supported": switched(config.auth_toggle_supported),
        "/api/config": fixed(config.gateway_config(facts)),
        "/api/generators": fixed(config.GENERATORS),
        "/api/generators/disconnect_types": fixed(["DownstreamATS"]),
        "/api/autoconfig/status": fixed(config.AUTOCONFIG_STATUS),
        "/api/system/testing": fixed(config.SYSTEM_TESTING),
    }
    # Site-controller actions a customer may GET (answers as documented; not 200, so they
    # stay out of ``paths``): run 202 with no body, stop refused, and config/completed, which
    # commits a configuration change and answers 202 with the status document.
    routes["/api/sitemaster/run"] = failing(Reply(202, b"", ""))
    routes["/api/sitemaster/stop"] = failing(
        error_reply(500, "Cannot Start Wizard", "Unable to stop sitemaster")
    )
    routes["/api/config/completed"] = Route(
        lambda snap, sw: json_reply(system.status(facts, snap, sw), 202), live=True, ok=False
    )
    if facts.options.has_pvac:
        routes["/api/solar_powerwall"] = live(powerwalls.solar_powerwall)
    if facts.options.powerwall3:
        return {path: routes[path] for path in POWERWALL3_PATHS}
    return routes


#: What a Powerwall 3 answers on its wired LAN after a customer login; every other /api/
#: path (``/api/status`` and ``/api/devices/vitals`` included) is 404 there.
POWERWALL3_PATHS = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
)
