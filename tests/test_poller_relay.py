"""The poller's control relay, against the simulator and the real broker.

Signed Max Backup commands travel dispatcher -> bus -> poller -> gateway and back
(``consumers/dispatch/lan.py`` is the dispatcher's end): a valid list/schedule/cancel goes
through and the gateway's own answer comes back; everything else is refused by the poller
without one request reaching the simulator (its request counts prove it); during a 429
cool-down the refusal is immediate; and readings keep flowing while commands are relayed,
never two gateway requests in flight (the simulator's ``max_in_flight``).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pytest

from powerwall_bus.consumers.dispatch.lan import LanChannel
from powerwall_bus.producers.poller.command import PollerConfig
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.producers.poller.relay import judge
from powerwall_bus.shared import control
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import (
    CONTROL_TEDAPI,
    CONTROL_TEDAPI_REPLY,
    routing_key,
)
from powerwall_bus.shared.control import Reason, Refusal
from powerwall_bus.shared.errors import MalformedMessage, RelayRefused, RelayUnavailable
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.messages import iso_time
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import AmqpSettings, GatewaySettings, PollerSettings
from powerwall_bus.shared.tedapi import clients, schema
from powerwall_bus.shared.tedapi.commands import (
    Acknowledged,
    BackupEvents,
    Kind,
    build_request,
    parse_response,
    sign_request,
)
from powerwall_bus.shared.tedapi.keys import public_der
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import sim_counts
from tests.support.collector import Collector
from tests.support.tedapi_keys import signing_key
from tests.support.waiting import wait_until

if TYPE_CHECKING:  # imported by name, pytest would try to collect it as a test class
    from tests.conftest import TestBus

PASSWORD = "relay-Test-1"
TEDAPI = "/tedapi/v1r"


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    """A simulator of its own with the "paired" key verified."""
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=5, powerwalls=1)), password=PASSWORD)
    server.signed.pair(public_der(signing_key("paired")))
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


def _poller(sim: SimulatorRunner, amqp: AmqpSettings, state: Path, **poller: object) -> Poller:
    config = PollerConfig(
        gateway=GatewaySettings(
            host=sim.address, password=PASSWORD, state_dir=state, rate_limit_cooldown=300.0
        ),
        amqp=amqp,
        poller=PollerSettings(**poller),  # type: ignore[arg-type]
    )
    running = Poller(config).start()
    assert running.relay is not None
    assert wait_until(running.relay.bound.is_set, 15), "the control queue was never bound"
    return running


@pytest.fixture
def relayed(own_sim: SimulatorRunner, bus: TestBus, tmp_path: Path) -> Iterator[Poller]:
    poller = _poller(own_sim, bus.settings, tmp_path)
    yield poller
    poller.stop()


def _din(sim: SimulatorRunner) -> str:
    return sim.server.gateway.din


def _request(sim: SimulatorRunner, kind: Kind, *, key: str = "paired", **extra: object) -> bytes:
    din = str(extra.pop("din", _din(sim)))
    now = float(extra.pop("now", time.time()))  # type: ignore[arg-type]
    return build_request(kind, din, signing_key(key), now, **extra)  # type: ignore[arg-type]


def _iso(epoch: float) -> str:
    return iso_time(epoch)


def _tedapi_requests(sim: SimulatorRunner) -> int:
    return int(sim_counts(sim)["requests"].get(TEDAPI, 0))


# --------------------------------------------------------------------------- the good path


def test_list_schedule_cancel_go_through_and_the_gateways_answer_comes_back(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="powerwall_bus.producers.poller")
    channel = LanChannel(bus.settings, _din(own_sim))
    try:
        listed = parse_response(channel.send(_request(own_sim, Kind.LIST), timeout=10))
        assert listed == BackupEvents(None)
        start = datetime.fromtimestamp(int(time.time()), UTC)
        event = BackupEvent(start, start + timedelta(minutes=10))
        answer = channel.send(_request(own_sim, Kind.SCHEDULE, event=event), timeout=10)
        assert parse_response(answer) == Acknowledged(Kind.SCHEDULE)
        assert own_sim.server.gateway.manual_backup == event  # the simulated battery holds
        listed = parse_response(channel.send(_request(own_sim, Kind.LIST), timeout=10))
        assert listed == BackupEvents(event)
        answer = channel.send(_request(own_sim, Kind.CANCEL), timeout=10)
        assert parse_response(answer) == Acknowledged(Kind.CANCEL)
        assert own_sim.server.gateway.manual_backup is None
    finally:
        channel.close()
    assert _tedapi_requests(own_sim) == 4
    assert relayed.relay is not None and relayed.relay.counts["relayed"] == 4
    # One line per change to Max Backup; the routine lists stay out of the log.
    relayed_lines = [r.getMessage() for r in caplog.records if "relayed a signed" in r.getMessage()]
    assert [line.split()[3] for line in relayed_lines] == ["schedule", "cancel"]


def test_a_gateway_fault_is_the_gateways_answer_not_a_refusal(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller
) -> None:
    """A key the gateway does not know signs a valid message: the poller relays it (only the
    gateway knows its paired keys) and the gateway's UNKNOWN_KEY_ID comes back."""
    channel = LanChannel(bus.settings, _din(own_sim))
    try:
        answer = channel.send(_request(own_sim, Kind.LIST, key="stranger"), timeout=10)
    finally:
        channel.close()
    with pytest.raises(Exception, match="UNKNOWN_KEY_ID"):
        parse_response(answer)
    assert _tedapi_requests(own_sim) == 1


def test_paired_key_calls_go_through_so_pair_add_lan_works_over_the_lan(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller
) -> None:
    """``pwbus pair add-lan --via lan``: a second key added by trusted signature, listed and
    removed, all relayed by the poller; a replayed add is refused."""
    from powerwall_bus.consumers.dispatch import pair

    din, signer = _din(own_sim), signing_key("paired")
    newcomer = public_der(signing_key("second machine"))
    channel = LanChannel(bus.settings, din)
    try:
        added = pair.add_lan_key(channel, signer, din, newcomer, "kitchen pi", now=time.time())
        assert added.public_key == newcomer
        assert newcomer in {key.der for key in own_sim.server.signed.paired()}
        listed = pair.signed_list(channel, signer, din, now=time.time())
        assert newcomer in {client.public_key for client in listed.clients}
        add = clients.build_client_request(
            clients.ClientKind.ADD, din, signer, time.time(), public_key=newcomer
        )
        channel.send(add, timeout=10)
        with pytest.raises(RelayRefused) as replayed:
            channel.send(add, timeout=10)
        assert replayed.value.reason == Reason.REPLAYED.value
        pair.remove_key(channel, signer, din, newcomer, now=time.time())
        assert newcomer not in {key.der for key in own_sim.server.signed.paired()}
    finally:
        channel.close()


# --------------------------------------------------------------------------- refusals


def _forged(body: bytes) -> bytes:
    """The signature's last byte flipped."""
    cut = body.rfind(b"\x12\x80\x04")  # rsa_data.signature: field 2, 512 bytes
    assert cut > 0
    at = cut + 3 + 511
    return body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]


def _signed_other(sim: SimulatorRunner) -> bytes:
    """Validly signed, for this gateway, but asking nothing the relay passes (an envelope
    with neither a Max Backup nor a paired-keys call)."""
    envelope = schema.MessageEnvelope()
    envelope.delivery_channel = schema.DELIVERY_CHANNEL_HERMES_COMMAND
    envelope.sender.authorized_client = schema.AUTHORIZED_CLIENT_CUSTOMER_MOBILE_APP
    envelope.recipient.din = _din(sim)
    return sign_request(envelope.SerializeToString(), _din(sim), signing_key("paired"), time.time())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("garbage", Reason.NOT_SIGNED),
        ("forged", Reason.NOT_SIGNED),
        ("expired", Reason.EXPIRED),
        ("wrong_din", Reason.WRONG_GATEWAY),
        ("not_max_backup", Reason.NOT_MAX_BACKUP),
    ],
)
def test_bodies_that_are_not_signed_max_backup_calls_never_reach_the_gateway(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller, name: str, reason: Reason
) -> None:
    bodies = {
        "garbage": lambda: b"\x0a\x03abc not a RoutableMessage",
        "forged": lambda: _forged(_request(own_sim, Kind.LIST)),
        "expired": lambda: _request(own_sim, Kind.CANCEL, now=time.time() - 60),
        "wrong_din": lambda: _request(own_sim, Kind.CANCEL, din="1232100-00-E--TG000000000000"),
        "not_max_backup": lambda: _signed_other(own_sim),
    }
    channel = LanChannel(bus.settings, _din(own_sim))
    try:
        with pytest.raises(RelayRefused) as refused:
            channel.send(bodies[name](), timeout=10)
    finally:
        channel.close()
    assert refused.value.reason == reason.value
    assert _tedapi_requests(own_sim) == 0


def _raw_command(
    bus: TestBus,
    body: bytes,
    *,
    reply: bool = True,
    kind: str = CONTROL_TEDAPI,
    din: str = "",
    wait: float = 5.0,
) -> dict[str, object] | None:
    """Publish a command by hand (not through LanChannel) and wait for the reply body."""
    connection = bus.connect()
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish(
            bus.settings.exchange,
            control.command_key(din),
            body,
            pika.BasicProperties(
                reply_to=queue if reply else None, correlation_id="c-1", type=kind
            ),
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            method, properties, answer = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                assert properties.correlation_id == "c-1"
                assert properties.type == CONTROL_TEDAPI_REPLY
                assert validate_message(CONTROL_TEDAPI_REPLY, answer) == []
                return dict(json.loads(answer))
            connection.sleep(0.05)
        return None
    finally:
        connection.close()


def test_malformed_commands_and_other_kinds_are_refused_and_one_without_reply_to_dropped(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller
) -> None:
    din = _din(own_sim)
    signed = _request(own_sim, Kind.LIST)
    not_json = _raw_command(bus, b"{not json", din=din)
    assert not_json is not None and not_json["refusal"]["reason"] == "malformed"  # type: ignore[index]
    other_kind = _raw_command(
        bus, control.command_body(din, signed, time.time()), kind="meters", din=din
    )
    assert other_kind is not None and other_kind["outcome"] == "refused"
    # The body names another gateway than the one it is routed to.
    elsewhere = _raw_command(
        bus, control.command_body("someone-else", signed, time.time()), din=din
    )
    assert elsewhere is not None and elsewhere["refusal"]["reason"] == "wrong_gateway"  # type: ignore[index]
    silent = _raw_command(
        bus, control.command_body(din, signed, time.time()), reply=False, din=din, wait=1.5
    )
    assert silent is None
    assert _tedapi_requests(own_sim) == 0


def test_a_signed_command_reaches_the_gateway_once(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller
) -> None:
    """Anyone on the bus may have seen a command: sending a cancel again, even with another
    (unsigned) uuid, is refused without reaching the gateway (a list may repeat)."""
    din = _din(own_sim)
    signed = _request(own_sim, Kind.CANCEL, request_uuid="00000000-0000-4000-8000-000000000001")
    first = _raw_command(bus, control.command_body(din, signed, time.time()), din=din)
    assert first is not None and first["outcome"] == "answered"
    again = signed.replace(
        b"00000000-0000-4000-8000-000000000001", b"00000000-0000-4000-8000-000000000002"
    )
    assert again != signed
    for body in (signed, again):
        second = _raw_command(bus, control.command_body(din, body, time.time()), din=din)
        assert second is not None and second["refusal"]["reason"] == "replayed"  # type: ignore[index]
    assert _tedapi_requests(own_sim) == 1
    listing = _request(own_sim, Kind.LIST)
    for _ in range(2):
        answer = _raw_command(bus, control.command_body(din, listing, time.time()), din=din)
        assert answer is not None and answer["outcome"] == "answered"


def test_a_poller_with_the_relay_off_takes_no_command(
    own_sim: SimulatorRunner, bus: TestBus, tmp_path: Path
) -> None:
    config = PollerConfig(
        gateway=GatewaySettings(host=own_sim.address, password=PASSWORD, state_dir=tmp_path),
        amqp=bus.settings,
        poller=PollerSettings(relay_commands=False, slow_endpoints=()),
    )
    poller = Poller(config).start()
    channel = LanChannel(bus.settings, _din(own_sim))
    try:
        assert poller.relay is None
        assert wait_until(lambda: sim_counts(own_sim)["requests"].get("/api/status"), 10)
        with pytest.raises(RelayUnavailable, match="no poller takes commands"):
            channel.send(_request(own_sim, Kind.CANCEL), timeout=5)
    finally:
        channel.close()
        poller.stop()
    assert _tedapi_requests(own_sim) == 0


def test_no_poller_for_the_gateway_is_said_at_once(bus: TestBus) -> None:
    channel = LanChannel(bus.settings, "1232100-00-E--TG000000000000")
    started = time.monotonic()
    try:
        with pytest.raises(RelayUnavailable, match="no poller takes commands"):
            channel.send(b"whatever", timeout=10)
    finally:
        channel.close()
    assert time.monotonic() - started < 3


def test_a_cool_down_refuses_commands_at_once(
    own_sim: SimulatorRunner, bus: TestBus, relayed: Poller
) -> None:
    own_sim.server.set_faults(FaultSet.parse([f"http-error=429@{TEDAPI}"]))
    channel = LanChannel(bus.settings, _din(own_sim))
    try:
        with pytest.raises(RelayRefused) as first:
            channel.send(_request(own_sim, Kind.LIST), timeout=10)
        assert first.value.reason == "cooldown"
        assert first.value.retry_at is not None and first.value.retry_at > time.time() + 200
        own_sim.server.set_faults(FaultSet())
        reads = sum(sim_counts(own_sim)["requests"].values())
        started = time.monotonic()
        with pytest.raises(RelayRefused) as second:
            channel.send(_request(own_sim, Kind.CANCEL), timeout=10)
        waited = time.monotonic() - started
    finally:
        channel.close()
    assert second.value.reason == "cooldown"
    assert waited < 2.0, waited  # answered by the relay, not after the cool-down
    time.sleep(1.0)
    counts = sim_counts(own_sim)
    assert counts["requests"][TEDAPI] == 1  # only the command that got the 429
    assert sum(counts["requests"].values()) == reads  # and no read since: the cool-down holds


# --------------------------------------------------------------------------- sharing the gateway


def test_readings_keep_flowing_and_never_two_requests_in_flight(
    own_sim: SimulatorRunner, bus: TestBus, tmp_path: Path
) -> None:
    own_sim.server.set_faults(FaultSet.parse(["latency=0.15"]))  # every request takes a while
    meters = Collector(bus.settings.url, bus.settings.exchange, [routing_key("meters", "*")])
    poller = _poller(own_sim, bus.settings, tmp_path, meters_interval=1.0, slow_endpoints=())
    channel = LanChannel(bus.settings, _din(own_sim))
    try:
        assert meters.wait_for(lambda m: len(m) >= 2, timeout=15)
        started = time.time()
        for _ in range(8):
            answer = channel.send(_request(own_sim, Kind.LIST), timeout=10)
            assert parse_response(answer) == BackupEvents(None)
        while time.time() - started < 3.5:
            channel.send(_request(own_sim, Kind.LIST), timeout=10)
        ended = time.time()
        assert meters.wait_for(
            lambda m: any(json.loads(x.body)["time"] > _iso(ended) for x in m), timeout=10
        )
    finally:
        channel.close()
        poller.stop()
        meters.close()
    times = [json.loads(m.body)["time"] for m in meters.messages()]
    during = [t for t in times if _iso(started) <= t <= _iso(ended)]
    counts = sim_counts(own_sim)
    assert counts["requests"][TEDAPI] >= 9
    assert len(during) >= 2, times  # the meters kept coming while commands were relayed
    assert counts["max_in_flight"] == 1


# --------------------------------------------------------------------------- pure parts


def test_the_relay_check_names_each_refusal() -> None:
    key = signing_key("paired")
    din = "1232100-00-E--TG123456789012"
    now = time.time()
    assert judge(build_request(Kind.LIST, din, key, now), din, now) is Kind.LIST
    late = judge(build_request(Kind.LIST, din, key, now), din, now + 30)
    assert isinstance(late, Refusal) and late.reason is Reason.EXPIRED
    other = judge(build_request(Kind.LIST, din, key, now), din + "X", now)
    assert isinstance(other, Refusal) and other.reason is Reason.WRONG_GATEWAY
    add = clients.build_client_request(
        clients.ClientKind.ADD, din, key, now, public_key=public_der(signing_key("other"))
    )
    assert judge(add, din, now) is clients.ClientKind.ADD


def test_command_and_reply_bodies_round_trip_and_validate() -> None:
    din = "1232100-00-E--TG123456789012"
    request = b"\x32\x00signed"
    body = control.command_body(din, request, 1_800_000_000.25)
    assert validate_message(control.command_key(din), body) == []
    assert control.parse_command(body) == control.Command(din, request)
    answered = control.reply_body(din, 1_800_000_000.5, call="list", response=b"\x01\x02")
    assert validate_message(CONTROL_TEDAPI_REPLY, answered) == []
    assert control.parse_reply(answered) == control.Reply(din, "list", b"\x01\x02", None)
    refusal = control.Refusal(Reason.COOLDOWN, "wait", 1_800_000_300.0)
    refused = control.reply_body(din, 1_800_000_000.5, call="schedule", refusal=refusal)
    assert validate_message(CONTROL_TEDAPI_REPLY, refused) == []
    assert control.parse_reply(refused).refusal == refusal
    with pytest.raises(MalformedMessage):
        control.parse_command(json.dumps({"version": 1, "kind": CONTROL_TEDAPI}).encode())
    with pytest.raises(MalformedMessage):
        control.parse_command(b"{" + b" " * control.MAX_COMMAND_BYTES + b"}")
    with pytest.raises(ValueError):
        control.reply_body(din, 0.0)
    assert base64.b64decode(json.loads(body)["request"]) == request
