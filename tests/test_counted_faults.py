"""The fake cloud services' armed faults: counted answers, -1 until cleared, unknown names refused.

The control endpoint is exercised on both fakes over a real local socket, as the tests and
``pwbus simulate`` users drive it.
"""

from __future__ import annotations

import pytest
import requests

from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner
from powerwall_bus.simulator.counted_faults import CountedFaults
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner


def test_an_armed_fault_strikes_that_many_times_and_minus_one_until_cleared() -> None:
    faults = CountedFaults(["a", "b"])
    faults.arm({"a": 2, "b": -1})
    assert [faults.fire("a") for _ in range(3)] == [True, True, False]
    assert all(faults.fire("b") for _ in range(50))
    faults.arm({}, clear=["b"])
    assert not faults.fire("b")
    faults.arm({"a": 0})
    assert not faults.fire("a")


def test_an_unknown_name_is_refused_and_changes_nothing() -> None:
    faults = CountedFaults(["a"])
    faults.arm({"a": 1})
    with pytest.raises(ValueError, match="unknown fault 'nope'; known: a"):
        faults.arm({"a": 5, "nope": 1}, clear=["a"])
    assert faults.armed == {"a": 1}
    faults.clear()
    assert faults.armed == {}


@pytest.mark.parametrize("which", ["octopus", "cloud"])
def test_the_control_endpoint_arms_faults_and_says_why_it_refuses(which: str) -> None:
    runner = (
        FakeOctopusRunner(FakeOctopus())
        if which == "octopus"
        else FakeCloudRunner(FakeCloud(gateway_url="https://127.0.0.1:9", din="1232100-00-E--TG1"))
    )
    name = "http429" if which == "octopus" else "rate_limited"
    with runner:
        url = runner.control + "faults"
        answer = requests.post(url, json={"set": {name: 2}}, timeout=5)
        assert answer.status_code == 200 and answer.json() == {"faults": {name: 2}}
        assert runner.call(runner.fake.faults.fire, name)
        refused = requests.post(url, json={"set": {"meteor": 1}}, timeout=5)
        assert refused.status_code == 400 and "unknown fault 'meteor'" in refused.json()["error"]
        for body in (b"not json", b"[1, 2]"):
            bad = requests.post(
                url, data=body, headers={"Content-Type": "application/json"}, timeout=5
            )
            assert bad.status_code == 400, body
        cleared = requests.post(url, json={"clear": [name]}, timeout=5)
        assert cleared.json() == {"faults": {}}
