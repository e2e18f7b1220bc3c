"""Real gateway clients, driven as their users drive them, against anything that answers like
a gateway (the simulator, ``pwbus facade``): every value they return, as plain data.

- :func:`home_assistant` runs ``tesla-powerwall`` (the library of Home Assistant's Powerwall
  integration) through the integration's calls: the config flow (login, site info, gateway
  DIN), the setup (DIN, site info, status, device type, serial numbers, batteries), one
  update (reserve, charge, site master, meters, grid services, grid status, batteries),
  then an update whose session the server forgot, recovered as the integration does it
  (logout, login, the update again).
- :func:`pypowerwall_local` runs ``pypowerwall`` in local mode through its public getters.

Both return dictionaries of plain values, so the same call against the simulator and
against the facade can be compared with ``==``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp


def plain(value: Any) -> Any:
    """Responses, enums and containers as JSON-like data (the libraries' objects have no
    ``__eq__`` of their own worth trusting)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "_raw"):  # tesla_powerwall responses keep the raw JSON they came from
        return plain(value._raw)
    return value


async def _update(power_wall: Any) -> dict[str, Any]:
    """One update of the integration's coordinator, call by call, in its order."""
    from tesla_powerwall import MissingAttributeError

    try:
        reserve = await power_wall.get_backup_reserve_percentage()
    except MissingAttributeError:
        reserve = None
    return {
        "backup_reserve": reserve,
        "charge": await power_wall.get_charge(),
        "site_master": plain(await power_wall.get_sitemaster()),
        "meters": plain(await power_wall.get_meters()),
        "grid_services_active": await power_wall.is_grid_services_active(),
        "grid_status": plain(await power_wall.get_grid_status()),
        "batteries": plain(await power_wall.get_batteries()),
    }


async def _home_assistant(
    host: str, password: str, forget_sessions: Callable[[], None]
) -> dict[str, Any]:
    from tesla_powerwall import AccessDeniedError, Powerwall

    values: dict[str, Any] = {}
    jar = aiohttp.CookieJar(unsafe=True)  # the integration's: IP addresses keep cookies
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        # config flow
        flow = Powerwall(host, http_session=http, verify_ssl=False)
        await flow.login(password)
        values["flow_site_info"] = plain(await flow.get_site_info())
        values["flow_din"] = await flow.get_gateway_din()
        values["flow_authenticated"] = flow.is_authenticated()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        # setup
        power_wall = Powerwall(host, http_session=http, verify_ssl=False)
        await power_wall.login(password)
        values["setup"] = {
            "gateway_din": await power_wall.get_gateway_din(),
            "site_info": plain(await power_wall.get_site_info()),
            "status": plain(await power_wall.get_status()),
            "device_type": plain(await power_wall.get_device_type()),
            "serial_numbers": sorted(await power_wall.get_serial_numbers()),
            "batteries": plain(await power_wall.get_batteries()),
        }
        values["update"] = await _update(power_wall)
        # the server forgets the session; the integration's second attempt logs in again
        forget_sessions()
        try:
            await _update(power_wall)
        except AccessDeniedError as exc:
            values["expired_error"] = [exc.error, exc.message]
        if power_wall.is_authenticated():
            await power_wall.logout()
        values["after_logout_authenticated"] = power_wall.is_authenticated()
        await power_wall.login(password)
        values["update_after_login"] = await _update(power_wall)
        # writes a customer may not make: the integration's off-grid switch
        try:
            from tesla_powerwall import IslandMode

            await power_wall.set_island_mode(IslandMode.OFFGRID)
        except AccessDeniedError as exc:
            values["island_error"] = [exc.error, exc.message]
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        wrong = Powerwall(host, http_session=http, verify_ssl=False)
        try:
            await wrong.login(password + "-wrong")
        except AccessDeniedError as exc:
            values["wrong_password_error"] = [exc.error, exc.message]
    return values


def home_assistant(host: str, password: str, forget_sessions: Callable[[], None]) -> dict:
    """The integration's call sequence against ``host`` (``ip:port``); ``forget_sessions``
    makes the server drop every session (as a gateway reboot would)."""
    return asyncio.run(_home_assistant(host, password, forget_sessions))


#: pypowerwall's public getters, by name: the values a dashboard or script reads.
PYPOWERWALL_GETTERS: dict[str, Callable[[Any], Any]] = {
    "level": lambda pw: pw.level(),
    "level_scaled": lambda pw: pw.level(scale=True),
    "power": lambda pw: pw.power(),
    "site": lambda pw: pw.site(verbose=True),
    "solar": lambda pw: pw.solar(),
    "battery": lambda pw: pw.battery(),
    "load": lambda pw: pw.load(),
    "home": lambda pw: pw.home(),
    "site_name": lambda pw: pw.site_name(),
    "status": lambda pw: pw.status(),
    "version": lambda pw: pw.version(),
    "version_int": lambda pw: pw.version(int_value=True),
    "uptime": lambda pw: pw.uptime(),
    "din": lambda pw: pw.din(),
    "vitals": lambda pw: pw.vitals(),
    "strings": lambda pw: pw.strings(),
    "temps": lambda pw: pw.temps(),
    "alerts": lambda pw: sorted(pw.alerts()),
    "reserve": lambda pw: pw.get_reserve(),
    "reserve_raw": lambda pw: pw.get_reserve(scale=False),
    "mode": lambda pw: pw.get_mode(),
    "grid_status": lambda pw: pw.grid_status(),
    "grid_status_numeric": lambda pw: pw.grid_status("numeric"),
    "system_status": lambda pw: pw.system_status(),
    "battery_blocks": lambda pw: pw.battery_blocks(),
    "time_remaining": lambda pw: pw.get_time_remaining(),
}


def pypowerwall_local(host: str, password: str, folder: Path, *, authmode: str = "cookie") -> dict:
    """pypowerwall in local mode (no failover to the cloud: nothing leaves this machine)
    through :data:`PYPOWERWALL_GETTERS`, and the raw polls of ``paths``."""
    import pypowerwall

    folder.mkdir(parents=True, exist_ok=True)
    pw = pypowerwall.Powerwall(
        host=host,
        password=password,
        email="test@example.invalid",
        timezone="America/Los_Angeles",
        authpath=str(folder),
        cachefile=str(folder / ".powerwall"),
        authmode=authmode,
        failover=False,
        timeout=5,
    )
    assert pw.is_connected(), f"pypowerwall could not log in to {host}"
    values = {name: get(pw) for name, get in PYPOWERWALL_GETTERS.items()}
    values["operation_refused"] = pw.set_reserve(50)  # a customer's write: None (403)
    pw.client.close_session()
    return values
