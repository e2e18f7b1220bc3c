"""``pwbus simulate`` and ``pwbus simctl``: run the simulated gateway, and steer a running one.

Light on purpose (see :mod:`powerwall_bus.shared.command`): the HTTPS server and the model
are imported when the simulator runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import ssl
import sys
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from powerwall_bus.shared.command import Command
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import SimulatorSettings, load
from powerwall_bus.shared.tls import unverified_client_context
from powerwall_bus.simulator.faults import FaultSet, describe_faults

if TYPE_CHECKING:  # the server stack is imported only when the simulator runs
    from powerwall_bus.simulator.server import GatewayServer

_LOGGER = logging.getLogger(__name__)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``pwbus simulate``; each maps to a ``simulator.*`` setting."""
    parser.add_argument("--host", dest="simulator.host", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", dest="simulator.port", help="HTTPS port, 0 for a free one (8443)")
    parser.add_argument(
        "--password",
        dest="simulator.password",
        help="customer password to accept (prefer PWBUS_SIM_PASSWORD: flags show in ps)",
    )
    parser.add_argument(
        "--fixtures",
        dest="simulator.fixtures",
        metavar="DIR",
        help="replay recorded bodies from DIR instead of simulating",
    )
    parser.add_argument(
        "--variant",
        dest="simulator.variant",
        help="with --fixtures: the __variant to serve, e.g. 21.44-running",
    )
    parser.add_argument("--seed", dest="simulator.seed", metavar="N", help="random seed (1)")
    parser.add_argument(
        "--din",
        dest="simulator.din",
        metavar="DIN",
        help="the gateway's DIN, PART--SERIAL (default: made from the seed)",
    )
    parser.add_argument(
        "--speed",
        dest="simulator.speed",
        help="simulated seconds per real second (1; 1440 = a day a minute)",
    )
    parser.add_argument("--powerwalls", dest="simulator.powerwalls", help="1 to 4 (2)")
    parser.add_argument(
        "--firmware",
        dest="simulator.firmware",
        help="firmware version to report (23.12.10 8f14e45f)",
    )
    parser.add_argument("--solar-kw", dest="simulator.solar_kw", help="array size, 0 = none")
    parser.add_argument("--timezone", dest="simulator.timezone", help="site time zone")
    parser.add_argument(
        "--session-ttl", dest="simulator.session_ttl", help="seconds a login stays valid (86400)"
    )
    parser.add_argument("--cert", dest="simulator.cert_file", help="PEM certificate to serve")
    parser.add_argument("--key", dest="simulator.key_file", help="PEM key of --cert")
    parser.add_argument(
        "--fault",
        dest="simulator.faults",
        action="append",
        metavar="SPEC",
        help="inject a fault (repeatable): NAME[=VALUE][@PATH,...]\n" + describe_faults(),
    )


def build_server(settings: SimulatorSettings) -> GatewayServer:
    """The server for these settings (model or replay, with the initial faults)."""
    from powerwall_bus.simulator.endpoints import SimulatedGateway
    from powerwall_bus.simulator.replay import FixtureReplay
    from powerwall_bus.simulator.server import GatewayServer
    from powerwall_bus.simulator.site import SiteOptions

    faults = FaultSet.parse(settings.faults)
    gateway = SimulatedGateway(
        SiteOptions(
            seed=settings.seed,
            powerwalls=settings.powerwalls,
            firmware=settings.firmware,
            timezone=settings.timezone,
            solar_kw=settings.solar_kw,
            speed=settings.speed,
            din=settings.din or None,
        )
    )
    replay = (
        FixtureReplay(settings.fixtures, settings.variant)
        if settings.fixtures is not None
        else None
    )
    if settings.variant and replay is None:
        raise ConfigError("simulator.variant", "only makes sense with --fixtures")
    return GatewayServer(
        gateway,
        password=settings.password,
        faults=faults,
        session_ttl=settings.session_ttl,
        replay=replay,
    )


def run_simulator(settings: SimulatorSettings) -> int:
    """Serve until SIGTERM or Ctrl-C."""
    from powerwall_bus.shared.certs import server_context
    from powerwall_bus.simulator.server import SimulatorRunner

    server = build_server(settings)
    try:
        context = server_context(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("simulator.cert_file", f"cannot load the certificate: {exc}") from None
    runner = SimulatorRunner(server, settings.host, settings.port, context)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await runner.start_async()
        except OSError as exc:
            raise ConfigError(
                "simulator.port",
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            ) from None
        _LOGGER.info(
            "simulated gateway %s (firmware %s, %d Powerwalls) listening on %s%s",
            server.gateway.din,
            server.gateway.firmware,
            settings.powerwalls,
            runner.url,
            f", replaying {settings.fixtures}" if settings.fixtures else "",
        )
        await stop.wait()
        _LOGGER.info("stopping the simulated gateway")
        await runner.stop_async()

    asyncio.run(serve())
    return 0


def add_simctl_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``pwbus simctl``."""
    parser.add_argument(
        "--url",
        default="https://127.0.0.1:8443",
        help="the simulator's base URL (https://127.0.0.1:8443)",
    )
    parser.add_argument(
        "action",
        choices=["counts", "reset", "faults", "set", "clear", "expire"],
        help="counts | reset | faults (list) | set SPEC... | clear NAME... | expire",
    )
    parser.add_argument("specs", nargs="*", help="fault specs for set, names for clear")


@dataclass(frozen=True)
class SimctlRequest:
    """What ``pwbus simctl`` was asked to do, and of which simulator."""

    url: str
    action: str
    specs: tuple[str, ...] = ()


def run_simctl(args: SimctlRequest) -> int:
    """Talk to a running simulator's control endpoints and print the JSON answer."""
    routes: dict[str, tuple[str, dict[str, Any] | None]] = {
        "counts": ("/_sim/counts", None),
        "reset": ("/_sim/reset", {}),
        "faults": ("/_sim/faults", None),
        "set": ("/_sim/faults", {"set": list(args.specs)}),
        "clear": ("/_sim/faults", {"clear": list(args.specs)}),
        "expire": ("/_sim/sessions/expire", {}),
    }
    path, payload = routes[args.action]
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        args.url.rstrip("/") + path,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    context = unverified_client_context()
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"pwbus simctl: {exc.code}: {exc.read().decode()[:300]}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"pwbus simctl: cannot reach {args.url}: {exc}\n")
        return 1
    sys.stdout.write(body + "\n")
    return 0


SIMULATE = Command(
    name="simulate",
    help="run the gateway simulator (HTTPS, for tests and demos)",
    add_arguments=add_simulate_arguments,
    load=lambda sources, args: load(SimulatorSettings, "simulator", sources),
    run=run_simulator,
    raw_help=True,
)

SIMCTL = Command(
    name="simctl",
    help="steer a running simulator (faults, counts)",
    add_arguments=add_simctl_arguments,
    load=lambda sources, args: SimctlRequest(args.url, args.action, tuple(args.specs)),
    run=run_simctl,
)
