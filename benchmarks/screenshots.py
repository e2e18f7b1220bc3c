"""Make the README's pictures of ``pwbus gui``: docs/images/gui.png and gui-dark.png.

Runs the real thing on a private X server (Xvfb) and a private exchange of a real RabbitMQ:
the gateway simulator on a sunny midday, the poller reading it, and the window fed from the
bus exactly as ``pwbus gui`` is. Each picture is taken once the window shows live data; the
script prints how long the window took to show its first picture (the resync's answer).

    python benchmarks/screenshots.py [--out docs/images]

The broker is ``$PWBUS_TEST_AMQP_URL`` (else ``$AMQP_URL``, else guest@127.0.0.1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from powerwall_bus.consumers.display.feed import BusSource  # noqa: E402
from powerwall_bus.consumers.display.state import DisplayState, Freshness  # noqa: E402
from powerwall_bus.consumers.gui.main import GuiApp  # noqa: E402
from powerwall_bus.consumers.gui.window import Window  # noqa: E402
from powerwall_bus.producers.poller.main import Poller, PollerConfig  # noqa: E402
from powerwall_bus.shared.acceptance import Policy  # noqa: E402
from powerwall_bus.shared.certs import server_context  # noqa: E402
from powerwall_bus.shared.settings import (  # noqa: E402
    AmqpSettings,
    DisplaySettings,
    GatewaySettings,
    GuiSettings,
    PollerSettings,
)
from powerwall_bus.shared.threads import ThreadFailures  # noqa: E402
from powerwall_bus.simulator.endpoints import SimulatedGateway  # noqa: E402
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner  # noqa: E402
from powerwall_bus.simulator.site import SiteOptions  # noqa: E402
from tests.support.xvfb import Xvfb  # noqa: E402

PASSWORD = "screenshot-Pass-1"
#: A June midday in the simulator's default site (Los Angeles): the sun is up, the
#: Powerwalls charge and the house exports a little.
MIDDAY = dt.datetime(2026, 6, 21, 19, 30, tzinfo=dt.UTC)


def _broker() -> str:
    return os.environ.get(
        "PWBUS_TEST_AMQP_URL",
        os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    )


def _picture(xvfb: Xvfb, amqp: AmqpSettings, theme: str, out: Path) -> float:
    """Open the window in ``theme``, wait for live data, save its pixels; seconds to data."""
    state = DisplayState(Policy.for_consumer(amqp, DisplaySettings(), "display"))
    failures = ThreadFailures()
    started = time.monotonic()
    source = BusSource(state, amqp, "", failures, name="screenshots")
    window = Window(GuiSettings(theme=theme), screen_name=xvfb.display)
    app = GuiApp(window, state, threading.Event())
    try:
        first = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            app.tick()
            window.root.update()
            view = state.view()
            ready = view.freshness is Freshness.LIVE and view.soe is not None and view.mode
            if ready and first is None:
                first = time.monotonic() - started
            if first is not None and time.monotonic() - started > first + 1.5:
                break  # a second reading shown, every font drawn
            time.sleep(0.05)
        if first is None or failures.error is not None:
            raise SystemExit(f"no live data in the window ({failures.error})")
        root = window.root
        left, top = root.winfo_rootx(), root.winfo_rooty()
        image = xvfb.grab((left, top, left + root.winfo_width(), top + root.winfo_height()))
        image.save(out, optimize=True)
        print(f"{out}: {image.size[0]}x{image.size[1]}, first picture after {first:.2f} s")
        return first
    finally:
        source.stop()
        window.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # Tk widgets form reference cycles and Tcl aborts when another thread's collection
    # frees them: collect only here, after each window (as pwbus gui does).
    gc.disable()
    amqp = AmqpSettings(url=_broker(), exchange=f"screenshots.{uuid.uuid4().hex[:8]}")
    site = SiteOptions(seed=3, powerwalls=2, start=MIDDAY, initial_soe=72.0)
    server = GatewayServer(SimulatedGateway(site), password=PASSWORD)
    with (
        tempfile.TemporaryDirectory() as state_dir,
        SimulatorRunner(server, ssl_context=server_context()) as sim,
        Xvfb(size=(1024, 768)) as xvfb,
    ):
        poller = Poller(
            PollerConfig(
                gateway=GatewaySettings(
                    host=sim.address, password=PASSWORD, state_dir=Path(state_dir)
                ),
                amqp=amqp,
                poller=PollerSettings(meters_interval=1.0),
            )
        ).start()
        try:
            for theme, name in (("light", "gui.png"), ("dark", "gui-dark.png")):
                _picture(xvfb, amqp, theme, args.out / name)
                gc.collect()  # the closed window's Tk objects go here, in Tk's thread
        finally:
            poller.stop()
            connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
            connection.channel().exchange_delete(amqp.exchange)
            connection.close()


if __name__ == "__main__":
    main()
