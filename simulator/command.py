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
from powerwall_bus.shared.settings import GatewaySettings, SimulatorSettings, Sources, load
from powerwall_bus.shared.tls import unverified_client_context
from powerwall_bus.simulator.faults import FaultSet, describe_faults

if TYPE_CHECKING:  # the server stack is imported only when the simulator runs
    from powerwall_bus.simulator.cloud import FakeCloudRunner
    from powerwall_bus.simulator.octopus import FakeOctopusRunner
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
    parser.add_argument(
        "--powerwall3",
        dest="simulator.powerwall3",
        action="store_const",
        const=True,
        help="answer like a Powerwall 3 on its wired LAN: only the meters, state of energy and "
        "grid status; /api/status, /api/devices/vitals and every other path are 404",
    )
    parser.add_argument("--solar-kw", dest="simulator.solar_kw", help="array size, 0 = none")
    parser.add_argument("--timezone", dest="simulator.timezone", help="site time zone")
    parser.add_argument(
        "--session-ttl", dest="simulator.session_ttl", help="seconds a login stays valid (86400)"
    )
    parser.add_argument("--cert", dest="simulator.cert_file", help="PEM certificate to serve")
    parser.add_argument("--key", dest="simulator.key_file", help="PEM key of --cert")
    parser.add_argument(
        "--octopus-port",
        dest="simulator.octopus_port",
        metavar="PORT",
        help="also serve a fake Octopus GraphQL API (http, same host) on PORT, for a demo "
        "of pwbus octopus (key: PWBUS_SIM_OCTOPUS_API_KEY)",
    )
    parser.add_argument(
        "--cloud-port",
        dest="simulator.cloud_port",
        metavar="PORT",
        help="also serve a fake Tesla cloud (http, same host) on PORT that relays signed "
        "commands to this simulator, for a demo of pwbus pair and the cloud road; tokens: "
        "POST http://HOST:PORT/_sim/tokens, the switch toggle: POST .../_sim/toggle",
    )
    parser.add_argument(
        "--paired-key",
        dest="simulator.paired_keys",
        action="append",
        metavar="FILE.pem",
        help="accept signed TEDAPI (v1r) commands from this RSA key (public or private PEM; "
        "repeatable)",
    )
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
            powerwall3=settings.powerwall3,
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
        paired_keys=_paired_keys(settings.paired_keys),
    )


def _paired_keys(files: tuple[str, ...]) -> list[bytes]:
    """The DER public keys of ``--paired-key`` files (only the public half is kept)."""
    from pathlib import Path

    from powerwall_bus.shared.errors import TedapiKeyError
    from powerwall_bus.shared.tedapi.keys import load_public_key, public_der

    try:
        return [public_der(load_public_key(Path(name))) for name in files]
    except TedapiKeyError as exc:
        raise ConfigError("simulator.paired_keys", str(exc)) from None


async def start_fake_octopus(settings: SimulatorSettings) -> FakeOctopusRunner | None:
    """The fake Octopus of ``--octopus-port``, listening; None without one."""
    if settings.octopus_port is None:
        return None
    from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner

    fake = FakeOctopus(api_key=settings.octopus_api_key, account=settings.octopus_account)
    runner = FakeOctopusRunner(fake, settings.host, settings.octopus_port)
    try:
        await runner.start_async()
    except OSError as exc:
        raise ConfigError(
            "simulator.octopus_port",
            f"cannot listen on {settings.host}:{settings.octopus_port}: {exc.strerror}",
        ) from None
    _LOGGER.info(
        "fake Octopus (account %s) listening on %s; control at %s",
        fake.account,
        runner.url,
        runner.control,
    )
    return runner


async def start_fake_cloud(
    settings: SimulatorSettings, gateway_url: str, din: str
) -> FakeCloudRunner | None:
    """The fake Tesla cloud of ``--cloud-port``, relaying to the gateway at ``gateway_url``;
    None without one."""
    if settings.cloud_port is None:
        return None
    from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner

    runner = FakeCloudRunner(
        FakeCloud(gateway_url=gateway_url, din=din), settings.host, settings.cloud_port
    )
    try:
        await runner.start_async()
    except OSError as exc:
        raise ConfigError(
            "simulator.cloud_port",
            f"cannot listen on {settings.host}:{settings.cloud_port}: {exc.strerror}",
        ) from None
    _LOGGER.info(
        "fake Tesla cloud listening on %s (token endpoint %s); control at %s",
        runner.url,
        runner.token_url,
        runner.control,
    )
    return runner


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
        octopus = await start_fake_octopus(settings)
        cloud = await start_fake_cloud(settings, runner.url, server.gateway.din)
        await stop.wait()
        _LOGGER.info("stopping the simulated gateway")
        if cloud is not None:
            await cloud.stop_async()
        if octopus is not None:
            await octopus.stop_async()
        await runner.stop_async()

    asyncio.run(serve())
    return 0


def add_simctl_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``pwbus simctl``."""
    parser.add_argument(
        "--url",
        default=None,
        help="the simulator's base URL (default: the one a running `pwbus stack --simulate` "
        "recorded in the state folder, else https://127.0.0.1:8443)",
    )
    parser.add_argument(
        "action",
        choices=["counts", "reset", "faults", "set", "clear", "expire", "pair", "unpair", "paired"],
        help="counts | reset | faults (list) | set SPEC... | clear NAME... | expire | "
        "pair FILE.pem... [--pending] | unpair FILE.pem... | paired (list)",
    )
    parser.add_argument(
        "specs", nargs="*", help="fault specs for set, names for clear, PEM files for (un)pair"
    )
    parser.add_argument(
        "--pending",
        action="store_true",
        help="with pair, after the files: the key is registered but not verified (no switch "
        "toggle yet)",
    )


#: Where ``pwbus simulate`` listens by default.
DEFAULT_URL = "https://127.0.0.1:8443"


def simulator_url(sources: Sources) -> str:
    """The simulator of the stack running on this state folder, else the default one.

    A stack with several simulated gateways ([gateways.NAME]) has one per name: then the
    URL must be given, and the message lists them.
    """
    from powerwall_bus.shared.stack_record import read_record

    record = read_record(load(GatewaySettings, "gateway", sources).state_dir)
    if record is None or not record.running or not record.simulators:
        return DEFAULT_URL
    if len(record.simulators) == 1:
        return next(iter(record.simulators.values()))
    listed = ", ".join(f"{name}: {url}" for name, url in sorted(record.simulators.items()))
    raise ConfigError("simctl.url", f"the stack runs several simulators, choose one: {listed}")


@dataclass(frozen=True)
class SimctlRequest:
    """What ``pwbus simctl`` was asked to do, and of which simulator."""

    url: str
    action: str
    specs: tuple[str, ...] = ()
    pending: bool = False


def run_simctl(args: SimctlRequest) -> int:
    """Talk to a running simulator's control endpoints and print the JSON answer."""
    if args.action in ("pair", "unpair"):
        return _simctl_keys(args)
    routes: dict[str, tuple[str, dict[str, Any] | None]] = {
        "counts": ("/_sim/counts", None),
        "reset": ("/_sim/reset", {}),
        "faults": ("/_sim/faults", None),
        "set": ("/_sim/faults", {"set": list(args.specs)}),
        "clear": ("/_sim/faults", {"clear": list(args.specs)}),
        "expire": ("/_sim/sessions/expire", {}),
        "paired": ("/_sim/pair", None),
    }
    path, payload = routes[args.action]
    return _simctl_call(args.url, path, payload)


def _simctl_keys(args: SimctlRequest) -> int:
    """``pair``/``unpair`` FILE.pem...: send each key's public half, never the private key."""
    from pathlib import Path

    from powerwall_bus.shared.errors import TedapiKeyError
    from powerwall_bus.shared.tedapi.keys import load_public_key, public_pem

    if not args.specs:
        sys.stderr.write(f"pwbus simctl: {args.action} needs at least one PEM file\n")
        return 2
    status = 0
    for name in args.specs:
        try:
            pem = public_pem(load_public_key(Path(name)))
        except TedapiKeyError as exc:
            sys.stderr.write(f"pwbus simctl: {exc}\n")
            return 2
        payload: dict[str, Any] = {"public_key": pem}
        if args.action == "pair":
            payload["verified"] = not args.pending
        status = _simctl_call(args.url, f"/_sim/{args.action}", payload) or status
    return status


def _simctl_call(url: str, path: str, payload: dict[str, Any] | None) -> int:
    """GET (no payload) or POST one control endpoint; print its JSON answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url.rstrip("/") + path,
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
        sys.stderr.write(f"pwbus simctl: cannot reach {url}: {exc}\n")
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
    help="steer a running simulator (faults, counts, paired keys)",
    add_arguments=add_simctl_arguments,
    load=lambda sources, args: SimctlRequest(
        args.url or simulator_url(sources), args.action, tuple(args.specs), args.pending
    ),
    run=run_simctl,
)
