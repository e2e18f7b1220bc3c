"""The configuration family: installation, solar, networks, grid codes and the setup wizard.

These bodies describe how the site was installed and configured, not what it is doing: they
depend on the site's options (and a few on the site controller switch), never on the
snapshot, so the gateway renders them once per switch change. Documents that are the same
on every site are constants; the paths that serve them are in
:mod:`~simulator.endpoints.routes`.
"""

from __future__ import annotations

from powerwall_bus.simulator.endpoints.base import SiteFacts, Switches, n

SOLAR_BRANDS = (
    "ABB",
    "Delta Energy Systems",
    "Enphase Energy",
    "Fronius",
    "Generac",
    "Huawei Technologies",
    "SMA",
    "SolarEdge Technologies",
    "Sungrow Power Supply",
    "SunPower",
    "Tesla",
)

CUSTOMER_REGISTRATION = {
    "privacy_notice": None,
    "limited_warranty": None,
    "grid_services": None,
    "marketing": None,
    "registered": True,
    "timed_out_registration": False,
}
CLIENT_PROTOCOLS = {
    "dnp3": False,
    "m2m": False,
    "mtls": False,
    "modbus": False,
    "allow_public_ip": False,
}
CT_VOLTAGE_REFERENCES = {"ct1": "Phase1", "ct2": "Phase2", "ct3": "Phase1"}
GENERATORS = {"disconnect_type": "None", "generators": []}
AUTOCONFIG_STATUS = {
    "status": "not_applicable",
    "running": False,
    "retry_possible": False,
    "have_registered": False,
    "have_timezone": False,
    "have_gridcode": False,
    "grid_availability": "",
}
SYSTEM_TESTING = {
    "running": False,
    "status": "TestNotRun",
    "charge_tests": None,
    "meter_results": None,
    "inverter_results": None,
    "hysteresis": 0,
    "error": "",
    "errors": None,
    "tests": None,
}


def site_name(facts: SiteFacts) -> dict[str, object]:
    """``/api/site_info/site_name``."""
    return {"site_name": facts.options.site_name, "timezone": facts.options.timezone}


def operation(facts: SiteFacts) -> dict[str, object]:
    """``/api/operation``: self-consumption with the backup reserve on the gateway's scale."""
    return {
        "real_mode": "self_consumption",
        "backup_reserve_percent": n(facts.options.gateway_reserve_percent),
        "freq_shift_load_shed_soe": 65,
        "freq_shift_load_shed_delta_f": -0.32,
    }


def gateway_config(facts: SiteFacts) -> dict[str, object]:
    """``/api/config``: the gateway's VIN (its DIN), as recorded."""
    return {"vin": facts.identity.gateway_din}


def auth_toggle_supported(_facts: SiteFacts, sw: Switches) -> dict[str, object]:
    """``/api/auth/toggle/supported``: only while the site controller runs."""
    return {"toggle_auth_supported": sw.sitemaster_running}


def installer(facts: SiteFacts, sw: Switches) -> dict[str, object]:
    """``/api/installer``: who installed the site and how; ``run_sitemaster`` only while it runs."""
    body: dict[str, object] = {
        "company": "Tesla",
        "customer_id": "",
        "phone": "",
        "email": "",
        "location": "",
        "mounting": "",
        "wiring": "",
        "backup_configuration": "Whole Home",
        "solar_installation": "New" if facts.options.has_pvac else "Existing",
        "solar_installation_type": "PV Panel",
    }
    if sw.sitemaster_running:
        body["run_sitemaster"] = True  # the key disappears while stopped (21.44 dumps)
    body["verified_config"] = True
    body["installation_types"] = ["Residential"]
    return body


def solars(facts: SiteFacts) -> list[dict[str, object]]:
    """``/api/solars``: the PV inverter (the Powerwall+'s, or microinverters); none without PV."""
    if not facts.options.has_solar:
        return []
    nameplate = facts.identity.pv_nameplate_w
    if facts.options.has_pvac:
        return [
            {
                "brand": "Tesla",
                "model": f"Solar Inverter {nameplate / 1000:g}",
                "power_rating_watts": nameplate,
            }
        ]
    return [
        {
            "brand": "Enphase Energy",
            "model": "IQ7PLUS-72-x-US (240V)",
            "power_rating_watts": nameplate,
        }
    ]


def networks() -> list[dict[str, object]]:
    """``/api/networks``: the gateway's wired and cellular interfaces, as recorded."""

    def network(name: str, interface: str, *, primary: bool, signal: int) -> dict[str, object]:
        return {
            "network_name": name,
            "interface": interface,
            "enabled": True,
            "dhcp": True if interface == "EthType" else None,
            "active": True,
            "primary": primary,
            "lastTeslaConnected": primary,
            "lastInternetConnected": primary,
            "iface_network_info": {
                "network_name": name,
                "ip_networks": [{"IP": "", "Mask": "////AA=="}],
                "gateway": "",
                "interface": interface,
                "state": "DeviceStateReady",
                "state_reason": "DeviceStateReasonNone",
                "signal_strength": signal,
                "hw_address": "",
            },
        }

    wired = network("ethernet_tesla_internal_default", "EthType", primary=True, signal=0)
    wired = {**wired, "extra_ips": [{"ip": "192.168.90.2", "netmask": 24}]}
    order = ("network_name", "interface", "enabled", "dhcp", "extra_ips", "active", "primary")
    wired = {key: wired[key] for key in order} | {k: v for k, v in wired.items() if k not in order}
    return [wired, network("gsm_tesla_internal_default", "GsmType", primary=False, signal=71)]


def saved_networks() -> list[dict[str, object]]:
    """The saved-network list of /api/system/networks."""
    return [
        {
            "network_name": "default_gsm",
            "interface": "GsmType",
            "security_type": "NONE",
            "dhcp": None,
        },
        {
            "network_name": "default_eth",
            "interface": "EthType",
            "security_type": "NONE",
            "dhcp": True,
        },
        {
            "network_name": "HomeWiFi",
            "interface": "WifiType",
            "security_type": "WPA2_Personal",
            "dhcp": True,
            "enabled": True,
        },
    ]


def grid_codes() -> dict[str, object]:
    """A few entries of the setup wizard's grid-code tree: country, state, standard, codes."""

    def code(name: str, volts: int, hertz: int, phase: str) -> dict[str, object]:
        return {
            "grid_code": name,
            "grid_voltage_setting": volts,
            "grid_freq_setting": hertz,
            "grid_phase_setting": phase,
        }

    return {
        "United States": {
            "California": {
                "UL1741SA": [code("60Hz_240V_s_UL1741SA:2019_California", 240, 60, "Split")],
            },
            "*": {"IEEE1547": [code("60Hz_240V_s_IEEE1547:2003", 240, 60, "Split")]},
        },
        "United Kingdom": {"*": {"G99": [code("50Hz_230V_1_G99:2018_UK", 230, 50, "Single")]}},
        "Australia": {"*": {"AS4777.2": [code("50Hz_230V_1_AS4777.2:2020_AU", 230, 50, "Single")]}},
    }
