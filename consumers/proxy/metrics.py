"""``/metrics``: the proxy's state in Prometheus' text format (``prometheus-client``).

A custom collector reads :class:`~powerwall_bus.consumers.proxy.state.ProxyState` at
scrape time: nothing updates metrics in the background, so a scrape always shows the same
data as ``/aggregates``, ``/soe`` or ``/pod`` at that moment, and the proxy does no work
for metrics between scrapes. The handler runs on the event loop, where the state lives, so
it reads without locks.

Names follow Prometheus' conventions: the unit in the name (``_watts``, ``_watt_hours``,
``_seconds``, ``_celsius``), ``_total`` on counters. Lifetime energy is a counter in watt
hours, the gateway's own unit, not joules: the numbers then equal the gateway's and the
dashboards' to the digit. Levels are ``_percent``, not ``_ratio``: the gateway, the Tesla
app, ``/soe`` and the backup reserve are all percentages, and the app's scale is defined
in percent points (``p/0.95 - 5/0.95``), so a percent gauge equals ``/soe`` exactly where a
ratio would be a rounded division. Gateway readings (``powerwall_*``) and the pipeline's
own health (``pwbus_*``) carry the served gateway's ``din`` and ``name`` labels.

The writer's dead-lettered messages are not here: the writer publishes nothing on the
exchange, by design (its broker user may not: :mod:`powerwall_bus.broker_users`), and the
proxy takes status only from the poller's user. The dead-letter queue's depth is the
broker's own figure: ``rabbitmq_queue_messages_ready{queue="pwbus.mysql.dead"}`` from the
``rabbitmq_prometheus`` plugin's ``/metrics/per-object`` (port 15692).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from powerwall_bus import __version__
from powerwall_bus.consumers.proxy import derived
from powerwall_bus.consumers.proxy.keys import METRICS
from powerwall_bus.consumers.proxy.poller_view import MAX_TEXT, PollerView, poller_view
from powerwall_bus.consumers.proxy.render import RenderOptions, aggregates_view
from powerwall_bus.consumers.proxy.state import (
    GRID_STATUS,
    OPERATION,
    POLLER_STATUS,
    SITE_NAME,
    SOE,
    STATUS,
    SYSTEM_STATUS,
    ProxyState,
    Stats,
)
from powerwall_bus.shared.gateway.payloads import app_soe, finite_float

#: The poller's gateway states (poller-status.json), one series each in the state set.
GATEWAY_STATES = (
    "starting",
    "ok",
    "cooldown",
    "unreachable",
    "site_controller_stopped",
    "login_refused",
    "session_refused",
    "login_capped",
    "stopped",
)
#: The most meters taken from one aggregates payload (it names its meters).
MAX_METERS = 16
#: The meter fields exported, by the metric name part and unit they become.
_METER_GAUGES = (
    ("instant_power", "power_watts", "Instant power, W (as /aggregates)"),
    ("instant_average_voltage", "voltage_volts", "Average voltage, V"),
    ("instant_total_current", "current_amperes", "Total current, A"),
    ("frequency", "frequency_hertz", "Frequency, Hz"),
)
_METER_COUNTERS = (
    ("energy_imported", "energy_imported_watt_hours", "Lifetime energy imported, Wh"),
    ("energy_exported", "energy_exported_watt_hours", "Lifetime energy exported, Wh"),
)
GATEWAY_LABELS = ("din", "name")


class ProxyCollector(Collector):
    """Everything ``/metrics`` shows, read from the state when Prometheus scrapes."""

    def __init__(self, state: ProxyState, stats: Stats, options: RenderOptions) -> None:
        self.state = state
        self.stats = stats
        self.options = options

    def collect(self) -> Iterator[Metric]:
        poller = poller_view(self.state.payload(POLLER_STATUS))
        gateway = self._gateway_labels(poller)
        yield from self._readings(gateway)
        yield from self._packs(gateway)
        yield from self._pipeline(gateway)
        yield from self._poller(gateway, poller)
        yield from self._proxy()

    # ------------------------------------------------------------------ labels

    def _gateway_labels(self, poller: PollerView) -> list[str]:
        """[din, name] of the served gateway ("" while unknown)."""
        followed = self.state.gateways.followed
        din = followed.din or poller.din or ""
        if not din:
            status = self.state.payload(STATUS)
            found = status.get("din") if isinstance(status, dict) else None
            din = found if isinstance(found, str) else ""
        return [din[:MAX_TEXT], (followed.name or "")[:MAX_TEXT]]

    # ------------------------------------------------------------------ gateway readings

    def _readings(self, gateway: list[str]) -> Iterator[Metric]:
        labels = [*GATEWAY_LABELS, "meter"]
        aggregates = aggregates_view(self.state, self.options) or {}
        meters = [
            (name[:MAX_TEXT], section)
            for name, section in list(aggregates.items())[:MAX_METERS]
            if isinstance(section, dict)
        ]
        for field, suffix, doc in _METER_GAUGES:
            family = GaugeMetricFamily(f"powerwall_meter_{suffix}", doc, labels=labels)
            for name, section in meters:
                _add(family, [*gateway, name], section.get(field))
            yield family
        for field, suffix, doc in _METER_COUNTERS:
            counter = CounterMetricFamily(f"powerwall_meter_{suffix}", doc, labels=labels)
            for name, section in meters:
                _add(counter, [*gateway, name], section.get(field))
            yield counter

        raw = finite_float(derived.level(self.state.payload(SOE)))
        yield _gauge(
            "powerwall_state_of_energy_percent",
            "State of energy on the gateway's scale, % (as /soe)",
            gateway,
            raw,
        )
        yield _gauge(
            "powerwall_battery_level_percent",
            "Battery level on the Tesla app's scale, % (p/0.95 - 5/0.95, not clamped; as "
            "/api/system_status/soe)",
            gateway,
            None if raw is None else app_soe(raw),
        )
        yield _gauge(
            "powerwall_backup_reserve_percent",
            "Backup reserve on the Tesla app's scale, % (as /pod backup_reserve_percent)",
            gateway,
            derived.reserve(self.state.payload(OPERATION)),
        )
        yield from self._grid(gateway)
        yield from self._info(gateway)

    def _grid(self, gateway: list[str]) -> Iterator[Metric]:
        grid = self.state.payload(GRID_STATUS)
        text = derived.grid_status_text(grid)
        states = GaugeMetricFamily(
            "powerwall_grid_status",
            "1 for the gateway's current grid_status, 0 for the others",
            labels=[*GATEWAY_LABELS, "state"],
        )
        if text is not None:
            known = list(derived.GRID_STATUS_NUMERIC)
            for state in known if text in known else [*known, text]:
                states.add_metric([*gateway, state], 1.0 if state == text else 0.0)
        yield states
        yield _gauge(
            "powerwall_grid_status_code",
            "pyPowerwall's grid_status number: 1 connected, 0 islanded or faulted, -1 changing",
            gateway,
            derived.grid_status_numeric(grid),
        )
        active = grid.get("grid_services_active") if isinstance(grid, dict) else None
        yield _gauge(
            "powerwall_grid_services_active",
            "1 while the gateway takes part in grid services",
            gateway,
            float(active) if isinstance(active, bool) else None,
        )

    def _info(self, gateway: list[str]) -> Iterator[Metric]:
        status = self.state.payload(STATUS)
        site = self.state.payload(SITE_NAME)
        if not isinstance(status, dict) and not isinstance(site, dict):
            return
        firmware = status.get("version") if isinstance(status, dict) else None
        site_name = site.get("site_name") if isinstance(site, dict) else None
        info = InfoMetricFamily(
            "powerwall_gateway", "The served gateway: firmware and site name", labels=GATEWAY_LABELS
        )
        info.add_metric(
            gateway,
            {
                "firmware": str(firmware or "")[:MAX_TEXT],
                "site_name": str(site_name or "")[:MAX_TEXT],
            },
        )
        yield info

    def _packs(self, gateway: list[str]) -> Iterator[Metric]:
        """Per Powerwall (PW1, PW2, ... as /pod numbers them) and the site's totals."""
        system_status = self.state.payload(SYSTEM_STATUS)
        vitals = self.state.vitals
        pod = derived.pod(
            system_status, vitals, time_remaining_hours=None, backup_reserve_percent=None
        )
        labels = [*GATEWAY_LABELS, "pack", "serial"]
        remaining = GaugeMetricFamily(
            "powerwall_pack_energy_remaining_watt_hours",
            "Energy left in one Powerwall, Wh (/pod PWn_POD_nom_energy_remaining)",
            labels=labels,
        )
        full = GaugeMetricFamily(
            "powerwall_pack_full_energy_watt_hours",
            "Energy of one full Powerwall, Wh (/pod PWn_POD_nom_full_pack_energy)",
            labels=labels,
        )
        power = GaugeMetricFamily(
            "powerwall_pack_power_watts",
            "One Powerwall's inverter output, W (/pod PWn_p_out)",
            labels=labels,
        )
        charged = CounterMetricFamily(
            "powerwall_pack_energy_charged_watt_hours",
            "Lifetime energy charged into one Powerwall, Wh",
            labels=labels,
        )
        discharged = CounterMetricFamily(
            "powerwall_pack_energy_discharged_watt_hours",
            "Lifetime energy discharged from one Powerwall, Wh",
            labels=labels,
        )
        n = 1
        while f"PW{n}_name" in pod and n <= MAX_METERS:
            serial = pod.get(f"PW{n}_PackageSerialNumber")
            values = [*gateway, f"PW{n}", str(serial or "")[:MAX_TEXT]]
            _add(remaining, values, pod.get(f"PW{n}_POD_nom_energy_remaining"))
            _add(full, values, pod.get(f"PW{n}_POD_nom_full_pack_energy"))
            _add(power, values, pod.get(f"PW{n}_p_out"))
            _add(charged, values, pod.get(f"PW{n}_energy_charged"))
            _add(discharged, values, pod.get(f"PW{n}_energy_discharged"))
            n += 1
        yield from (remaining, full, power, charged, discharged)
        temperature = GaugeMetricFamily(
            "powerwall_pack_temperature_celsius",
            "One Powerwall's ambient temperature, degrees C (/temps/pw PWn_temp)",
            labels=[*GATEWAY_LABELS, "pack"],
        )
        for n, celsius in enumerate(list(derived.temps(vitals).values())[:MAX_METERS], 1):
            _add(temperature, [*gateway, f"PW{n}"], celsius)
        yield temperature
        yield _gauge(
            "powerwall_energy_remaining_watt_hours",
            "Energy left in every Powerwall together, Wh (/pod nominal_energy_remaining)",
            gateway,
            pod.get("nominal_energy_remaining"),
        )
        yield _gauge(
            "powerwall_full_energy_watt_hours",
            "Energy of every Powerwall full, Wh (/pod nominal_full_pack_energy)",
            gateway,
            pod.get("nominal_full_pack_energy"),
        )

    # ------------------------------------------------------------------ pipeline health

    def _pipeline(self, gateway: list[str]) -> Iterator[Metric]:
        labels = [*GATEWAY_LABELS, "kind"]
        age = GaugeMetricFamily(
            "pwbus_data_age_seconds",
            "Seconds since the proxy received the latest message of a kind",
            labels=labels,
        )
        read = GaugeMetricFamily(
            "pwbus_reading_timestamp_seconds",
            "When the poller read the latest message of a kind (Unix time)",
            labels=labels,
        )
        for kind in self.state.kinds():
            item = self.state.item(kind)
            seconds = self.state.age(kind)
            if item is None or seconds is None:
                continue
            _add(age, [*gateway, kind[:MAX_TEXT]], seconds)
            _add(read, [*gateway, kind[:MAX_TEXT]], item.reading_time)
        yield age
        yield read

    def _poller(self, gateway: list[str], poller: PollerView) -> Iterator[Metric]:
        if self.state.item(POLLER_STATUS) is None:
            return  # no poller.status yet: absent, not zero
        labels = [*GATEWAY_LABELS, "endpoint"]
        requests = CounterMetricFamily(
            "pwbus_poller_requests",
            "Requests the poller sent to the gateway, by endpoint",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "pwbus_poller_errors",
            "Failed gateway requests, by endpoint and error (exception name or HTTPnnn)",
            labels=[*labels, "error"],
        )
        consecutive = GaugeMetricFamily(
            "pwbus_poller_consecutive_errors",
            "Failures in a row of one endpoint (0 after a success)",
            labels=labels,
        )
        last_success = GaugeMetricFamily(
            "pwbus_poller_last_success_timestamp_seconds",
            "The latest successful read of an endpoint (Unix time)",
            labels=labels,
        )
        for endpoint in poller.endpoints:
            values = [*gateway, endpoint.path]
            requests.add_metric(values, endpoint.requests)
            consecutive.add_metric(values, endpoint.consecutive_errors)
            _add(last_success, values, endpoint.last_success)
            for error, count in endpoint.errors.items():
                errors.add_metric([*values, error], count)
        yield from (requests, errors, consecutive, last_success)

        states = GaugeMetricFamily(
            "pwbus_poller_gateway_state",
            "1 for the poller's current view of the gateway, 0 for the other states",
            labels=[*GATEWAY_LABELS, "state"],
        )
        if poller.gateway_state is not None:
            extra = [] if poller.gateway_state in GATEWAY_STATES else [poller.gateway_state]
            for state in (*GATEWAY_STATES, *extra):
                states.add_metric([*gateway, state], 1.0 if state == poller.gateway_state else 0)
        yield states
        now = time.time()
        yield _gauge(
            "pwbus_poller_cooldown_active",
            "1 while the poller holds off the gateway after a 429 (rate limit)",
            gateway,
            1.0 if poller.cooling_down(now) else 0.0,
        )
        yield _gauge(
            "pwbus_poller_cooldown_until_timestamp_seconds",
            "The end of the current cool-down (Unix time); absent when none",
            gateway,
            poller.cooldown_until if poller.cooling_down(now) else None,
        )
        yield _gauge(
            "pwbus_poller_outbox_messages",
            "Messages waiting in the poller's outbox for the broker",
            gateway,
            poller.queued,
        )
        yield _gauge(
            "pwbus_poller_outbox_capacity_messages",
            "Room of the poller's outbox",
            gateway,
            poller.capacity,
        )
        yield _counter(
            "pwbus_poller_outbox_dropped_messages",
            "Messages the full outbox dropped",
            gateway,
            poller.dropped,
        )
        yield _gauge(
            "pwbus_poller_broker_connected",
            "1 while the poller is connected to the broker (as it last reported)",
            gateway,
            None if poller.broker_connected is None else float(poller.broker_connected),
        )
        yield _counter(
            "pwbus_poller_logins", "Logins the poller sent to the gateway", gateway, poller.logins
        )
        yield _gauge(
            "pwbus_poller_uptime_seconds", "Seconds the poller has run", gateway, poller.uptime
        )
        # Two gauges, not a summary: the poller reports quantiles without a sum, and the
        # "quantile" label belongs to summaries.
        for which, millis in (("median", poller.latency_p50_ms), ("p99", poller.latency_p99_ms)):
            yield _gauge(
                f"pwbus_poller_publish_latency_{which}_seconds",
                f"Time from reading to the broker's confirm, {which} of recent messages",
                gateway,
                None if millis is None else millis / 1000,
            )

    # ------------------------------------------------------------------ the proxy itself

    def _proxy(self) -> Iterator[Metric]:
        stats, state = self.stats, self.state
        info = InfoMetricFamily("pwbus_proxy", "The proxy's version")
        info.add_metric([], {"version": __version__})
        yield info
        yield _gauge(
            "pwbus_proxy_broker_connected",
            "1 while the proxy is connected to the broker",
            [],
            float(state.bus_connected),
            labels=(),
        )
        yield _counter(
            "pwbus_proxy_requests",
            "Data answers given (pyPowerwall's gets; /stats/clear restarts it)",
            [],
            stats.gets,
            labels=(),
        )
        yield _counter(
            "pwbus_proxy_no_data_answers",
            "Answers given without data (pyPowerwall's timeout)",
            [],
            stats.timeout,
            labels=(),
        )
        yield _counter(
            "pwbus_proxy_request_errors",
            "Answers that failed (pyPowerwall's errors)",
            [],
            stats.errors,
            labels=(),
        )
        paths = CounterMetricFamily(
            "pwbus_proxy_path_requests",
            "Data answers by path (at most 100 paths, the rest as 'other')",
            labels=["path"],
        )
        for path, count in stats.uri.items():
            paths.add_metric([path[:MAX_TEXT]], count)
        yield paths
        refused = CounterMetricFamily(
            "pwbus_proxy_refused_messages",
            "Bus messages the proxy dropped, by reason",
            labels=["reason"],
        )
        for reason, count in state.refused.counts().items():
            refused.add_metric([str(reason)[:MAX_TEXT]], count)
        yield refused
        yield _gauge(
            "pwbus_proxy_other_gateways",
            "Gateways seen on the bus besides the served one",
            [],
            len(state.gateways.others),
            labels=(),
        )
        yield _gauge(
            "pwbus_proxy_start_time_seconds",
            "When the proxy's statistics started (Unix time)",
            [],
            stats.start,
            labels=(),
        )


def _add(family: GaugeMetricFamily | CounterMetricFamily, values: list[str], value: Any) -> None:
    """One sample, when the value is a finite number (a missing reading is no series)."""
    number = finite_float(value)
    if number is not None:
        family.add_metric(values, number)


def _gauge(
    name: str,
    doc: str,
    values: list[str],
    value: Any,
    *,
    labels: tuple[str, ...] = GATEWAY_LABELS,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    _add(family, values, value)
    return family


def _counter(
    name: str,
    doc: str,
    values: list[str],
    value: Any,
    *,
    labels: tuple[str, ...] = GATEWAY_LABELS,
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    _add(family, values, value)
    return family


def registry_for(state: ProxyState, stats: Stats, options: RenderOptions) -> CollectorRegistry:
    """A registry of the proxy's collector plus the process's own (memory, CPU, files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(state, stats, options))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """(body, content type) for a scrape: OpenMetrics when the scraper asks, else text."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


async def metrics_route(request: web.Request) -> web.Response:
    """``/metrics``: a scrape (on the loop, where the state lives)."""
    body, content_type = exposition(request.app[METRICS], request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
