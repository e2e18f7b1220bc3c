"""``pwbus simulate --octopus-port``: the demo's fake Octopus beside the simulated gateway.

The real command, as a process: it says where the fake listens, the client logs in with the
configured key and account and reads a plan set through the control API, and SIGTERM
stops both servers with exit status 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import requests

from powerwall_bus.shared.errors import OctopusAuthError
from powerwall_bus.shared.octopus.client import OctopusClient

KEY = "sk_test_demo_key_for_simulate_0000"
ACCOUNT = "A-DEMO0042"


def test_simulate_starts_a_fake_octopus_on_request() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PWBUS_")}
    env.update({"PWBUS_SIM_OCTOPUS_API_KEY": KEY, "PWBUS_SIM_OCTOPUS_ACCOUNT": ACCOUNT})
    process = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "simulate", "--port", "0", "--octopus-port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"fake Octopus .* listening on (http://\S+/v1/graphql/);", line)
            if match:
                url.append(match.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(20), "".join(lines)
        graphql = url[0]
        control = graphql.replace("/v1/graphql/", "/_octopus/")
        plan = [
            {
                "start": "2030-03-29T00:30:00+00:00",
                "end": "2030-03-29T03:00:00+00:00",
                "type": "SMART",
                "energyAddedKwh": "24.5",
            }
        ]
        assert requests.post(control + "plan", json={"dispatches": plan}, timeout=5).ok
        client = OctopusClient(api_key=KEY, account=ACCOUNT, url=graphql)
        result = client.plan()
        assert [d.energy_kwh for d in result.plan.dispatches] == [24.5]
        wrong = OctopusClient(api_key="sk_test_not_it_000000", account=ACCOUNT, url=graphql)
        with pytest.raises(OctopusAuthError):
            wrong.plan()
        counts = requests.get(control + "counts", timeout=5).json()
        assert counts["logins"] == {"api_key": 2}
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    assert KEY not in "".join(lines)
