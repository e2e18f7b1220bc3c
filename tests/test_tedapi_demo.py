"""``pwbus tedapi demo``: the printout matches the wire, and ``--send`` reaches the gateway.

The field numbers the demo prints are checked against a wire reader written here (tags and
lengths only), not against the protobuf library that produced them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from powerwall_bus.cli import main
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.tedapi.keys import public_der, write_private_key
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.tedapi_keys import signing_key
from tests.test_poller_relay import PASSWORD, _poller

if TYPE_CHECKING:
    from tests.conftest import TestBus


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _wire(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) of every top-level field: varints as ints, lengths as bytes."""
    fields: list[tuple[int, bytes | int]] = []
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, at = _varint(data, at)
            fields.append((number, value))
        elif wire_type == 2:
            length, at = _varint(data, at)
            fields.append((number, data[at : at + length]))
            at += length
        else:
            raise AssertionError(f"wire type {wire_type} not used by v1r requests")
    return fields


def _numbers(lines: list[str], indent: int) -> list[int]:
    pattern = re.compile(rf"^ {{{indent}}}#(\d+) ")
    return [int(m.group(1)) for line in lines if (m := pattern.match(line))]


def _demo(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["tedapi", "demo", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_the_printed_fields_are_the_fields_on_the_wire(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _demo(capsys, "--kind", "schedule", "--minutes", "45", "--din", "DIN-UNDER-TEST")
    body = bytes.fromhex(next(x for x in lines if x.startswith("body (hex): ")).split()[-1])
    top = _wire(body)
    message = lines[1 : lines.index("")]
    assert _numbers(message, 2) == [number for number, _ in top] == [6, 10, 13, 51]
    envelope = dict(top)[10]
    assert isinstance(envelope, bytes)
    inner = _wire(envelope)
    # to_destination.domain, the envelope's fields, signature_data's two
    assert _numbers(message, 4) == [1, *(n for n, _ in inner), 1, 7]
    recipient = dict(inner)[3]
    assert isinstance(recipient, bytes) and _wire(recipient) == [(1, b"DIN-UNDER-TEST")]
    assert "      #45 schedule_manual_backup_event_request" in message
    assert "          #2 duration_seconds = 2700" in message
    assert any(x.startswith("verified as the gateway would: schedule, ") for x in lines)
    header = bytes.fromhex(lines[lines.index("") + 2].strip())
    assert header[:6] == bytes((0, 1, 7, 1, 1, 7)) and header[-1] == 0xFF


def test_a_list_call_carries_get_backup_events(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _demo(capsys)
    assert "      #49 get_backup_events_request" in lines
    assert any(x.startswith("verified as the gateway would: list, signature good") for x in lines)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--send"], "--send needs the gateway's --din"),
        (["--minutes", "0"], "1 to 1440"),
        (["--timeout", "0"], "at most 300 seconds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert main(["tedapi", "demo", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and words in captured.err


@pytest.fixture
def paired_sim() -> Iterator[SimulatorRunner]:
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=7, powerwalls=1)), password=PASSWORD)
    server.signed.pair(public_der(signing_key("paired")))
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


def test_send_goes_through_the_bus_and_the_poller_to_the_gateway(
    paired_sim: SimulatorRunner,
    bus: TestBus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    poller = _poller(paired_sim, bus.settings, tmp_path / "poller")
    try:
        key_file = write_private_key(signing_key("paired"), tmp_path)
        monkeypatch.setenv("AMQP_URL", bus.settings.url)
        monkeypatch.setenv("AMQP_EXCHANGE", bus.settings.exchange)
        din = paired_sim.server.gateway.din
        argv = ["--send", "--din", din, "--key-file", str(key_file), "--kind", "schedule"]
        lines = _demo(capsys, *argv)
        assert paired_sim.server.gateway.manual_backup is not None  # the battery holds
        reply = lines[lines.index(next(x for x in lines if x.startswith("reply "))) :]
        assert reply[-1] == "the gateway answered: Acknowledged(kind=<Kind.SCHEDULE: 'schedule'>)"
        assert "      #46 schedule_manual_backup_event_response" in reply
        assert poller.relay is not None and poller.relay.counts["relayed"] == 1
    finally:
        poller.stop()


def test_send_with_a_stranger_key_says_the_gateway_refused_it(
    paired_sim: SimulatorRunner,
    bus: TestBus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    poller = _poller(paired_sim, bus.settings, tmp_path / "poller")
    try:
        key_file = write_private_key(signing_key("stranger"), tmp_path)
        monkeypatch.setenv("AMQP_URL", bus.settings.url)
        monkeypatch.setenv("AMQP_EXCHANGE", bus.settings.exchange)
        argv = ["--send", "--din", paired_sim.server.gateway.din, "--key-file", str(key_file)]
        lines = _demo(capsys, *argv)
        assert lines[-1] == "the gateway refused it: UNKNOWN_KEY_ID"
    finally:
        poller.stop()
