"""What consumers accept (shared/acceptance.py) and in which order (shared/ordering.py): units."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from powerwall_bus.consumers.proxy.state import MAX_KINDS, TOO_MANY_KINDS, ProxyState
from powerwall_bus.shared.acceptance import Accepted, Policy, Reason, Refusal, judge
from powerwall_bus.shared.contract import METER_STREAM
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.messages import (
    NonFiniteNumber,
    Reading,
    RunSequence,
    meter_stream_message,
    parse_envelope,
    parse_meter_stream,
    reading_message,
)
from powerwall_bus.shared.ordering import Position, RunOrder, position_of
from powerwall_bus.shared.refusals import RefusalLog
from powerwall_bus.shared.settings import AmqpSettings, ProxySettings, WriterSettings

NOW = 1_795_269_838.0  # 2026-11-21T14:03:58Z
DIN = "1232100-00-E--TG121832953V3E"
SOE = "/api/system_status/soe"
AGGREGATES = {m: {"instant_power": 1.0} for m in ("site", "battery", "load", "solar")}
POLICY = Policy(poller_user="pwbus-poller", max_bytes=4096, max_future=300, max_past=86400)


def soe_body(at: float = NOW, percentage: Any = 50.0) -> bytes:
    return reading_message(Reading(SOE, at, DIN, {"percentage": percentage})).body


def stream_body(timestamp: str = str(NOW)) -> bytes:
    readings = json.dumps(AGGREGATES)
    return f'{{"timestamp": {timestamp}, "state_of_energy": 50, "readings": {readings}}}'.encode()


def verdict(
    body: bytes, *, kind: str = "soe", user: Any = "pwbus-poller", policy: Policy = POLICY
) -> Reason | None:
    judged = judge(policy, kind, body, user_id=user, headers=None, now=NOW)
    return judged.reason if isinstance(judged, Refusal) else None


CASES: list[tuple[str, dict[str, Any], Reason | None]] = [
    ("a reading of now", {"body": soe_body()}, None),
    ("user_id as bytes", {"body": soe_body(), "user": b"pwbus-poller"}, None),
    ("4 min ahead: clock skew", {"body": soe_body(NOW + 240)}, None),
    ("1 h old: held by the poller", {"body": soe_body(NOW - 3600)}, None),
    ("dated 2099", {"body": soe_body(4_070_908_800.0)}, Reason.FUTURE),
    ("6 min ahead", {"body": soe_body(NOW + 360)}, Reason.FUTURE),
    ("dated 1900", {"body": soe_body(-2_208_988_800.0)}, Reason.PAST),
    ("2 days old", {"body": soe_body(NOW - 2 * 86400)}, Reason.PAST),
    ("another broker user", {"body": soe_body(), "user": "mallory"}, Reason.FORGED),
    ("no user_id", {"body": soe_body(), "user": None}, Reason.NO_USER_ID),
    ("empty user_id", {"body": soe_body(), "user": ""}, Reason.NO_USER_ID),
    ("too large", {"body": soe_body() + b" " * 5000}, Reason.OVERSIZED),
    ("NaN", {"body": soe_body().replace(b"50.0", b"NaN")}, Reason.NON_FINITE),
    ("-Infinity", {"body": soe_body().replace(b"50.0", b"-Infinity")}, Reason.NON_FINITE),
    ("1e999", {"body": soe_body().replace(b"50.0", b"1e999")}, Reason.NON_FINITE),
    ("not JSON", {"body": b'{"version": 1,'}, Reason.MALFORMED),
    ("deeply nested", {"body": b"[" * 100_000 + b"]" * 100_000, "policy": Policy(
        "pwbus-poller", 1_000_000, 300, 86400)}, Reason.MALFORMED),
    ("MeterStream of now", {"body": stream_body(), "kind": METER_STREAM}, None),
    ("MeterStream Infinity", {"body": stream_body("Infinity"), "kind": METER_STREAM},
     Reason.NON_FINITE),
    ("MeterStream 1e300", {"body": stream_body("1e300"), "kind": METER_STREAM}, Reason.FUTURE),
    ("anonymous MeterStream", {"body": stream_body(), "kind": METER_STREAM, "user": None},
     Reason.NO_USER_ID),
    ("anonymous MeterStream, allowed", {"body": stream_body(), "kind": METER_STREAM,
     "user": None, "policy": Policy("pwbus-poller", 4096, 300, 86400, True)}, None),
    ("anonymous soe, MeterStream allowed", {"body": soe_body(), "user": None,
     "policy": Policy("pwbus-poller", 4096, 300, 86400, True)}, Reason.NO_USER_ID),
    ("MeterStream from another user, allowed", {"body": stream_body(), "kind": METER_STREAM,
     "user": "mallory", "policy": Policy("pwbus-poller", 4096, 300, 86400, True)},
     Reason.FORGED),
]  # fmt: skip


@pytest.mark.parametrize(("case", "delivery", "expected"), CASES, ids=[c[0] for c in CASES])
def test_judge(case: str, delivery: dict[str, Any], expected: Reason | None) -> None:
    assert verdict(**delivery) is expected


def test_refusals_say_why_in_one_line_and_name_the_setting() -> None:
    policy = Policy.for_consumer(
        AmqpSettings(url="amqp://writer:x@127.0.0.1/%2F"), WriterSettings(), "writer"
    )
    assert policy.poller_user == "writer"  # unset: the consumer's own user
    judged = judge(policy, "soe", soe_body(4_070_908_800.0), user_id="writer", headers={}, now=NOW)
    assert isinstance(judged, Refusal)
    assert "2099-01-01T00:00:00.000Z" in judged.detail and "writer.max_future" in judged.detail
    assert str(judged).startswith("future: ") and "\n" not in str(judged)
    forged = judge(policy, "soe", soe_body(), user_id="x" * 500, headers={}, now=NOW)
    assert isinstance(forged, Refusal) and len(forged.detail) < 200


def test_policy_defaults_per_consumer() -> None:
    amqp = AmqpSettings(url="amqp://proxy:x@127.0.0.1/%2F", poller_user="pwbus-poller")
    proxy = Policy.for_consumer(amqp, ProxySettings(), "proxy")
    writer = Policy.for_consumer(amqp, WriterSettings(), "writer")
    assert proxy.poller_user == writer.poller_user == "pwbus-poller"
    assert proxy.max_future == writer.max_future == 300
    # The writer's queue keeps readings while it is stopped: it takes much older ones.
    assert proxy.max_past == 86400 and writer.max_past == 30 * 86400
    assert not proxy.anonymous_meter_stream


def test_accepted_carries_the_message_its_time_and_position() -> None:
    message = reading_message(Reading(SOE, NOW, DIN, {"percentage": 50.0}))
    judged = judge(POLICY, "soe", message.body, user_id="pwbus-poller", headers={}, now=NOW)
    assert isinstance(judged, Accepted)
    assert judged.time == NOW and judged.position == Position(message.run, message.seq)
    stream = meter_stream_message(NOW, 50.0, AGGREGATES, DIN)
    judged = judge(
        POLICY,
        METER_STREAM,
        stream.body,
        user_id="pwbus-poller",
        headers=stream.headers,
        now=NOW,
    )
    assert isinstance(judged, Accepted) and judged.position == Position(stream.run, stream.seq)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E999"])
def test_parsers_refuse_numbers_json_cannot_carry(literal: bytes) -> None:
    with pytest.raises(NonFiniteNumber):
        parse_envelope(soe_body().replace(b"50.0", literal))
    with pytest.raises(NonFiniteNumber):
        parse_meter_stream(stream_body(literal.decode()))
    assert issubclass(NonFiniteNumber, MalformedMessage)  # callers catching that still do


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": [1, 2.5, -0.0, 1e-400, 1.7976931348623157e308, "x", null, true]}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"s": "\\ud800 lone surrogate"}',  # orjson refuses it, json takes it
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b'{"a": 1,}',
        b'{"a": 1} trailing',
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,  # deeper than either parser goes
        '{"text": "caf\u00e9"}',
    ],
)
def test_the_fast_json_parser_changes_no_verdict(body: Any, monkeypatch: Any) -> None:
    """With orjson (the fast extra) and without, ``loads`` gives the same document or the
    same kind of error: whatever orjson refuses goes to the standard parser."""
    from powerwall_bus.shared import messages

    def outcome() -> Any:
        try:
            return messages.loads(body)
        except RecursionError:
            return "too deep"
        except NonFiniteNumber:
            return "non-finite"
        except (ValueError, UnicodeDecodeError) as exc:
            return type(exc).__name__

    assert messages._orjson is not None  # the test environment has the fast extra
    fast = outcome()
    monkeypatch.setattr(messages, "_orjson", None)
    assert outcome() == fast


def test_envelope_run_and_seq_are_checked_when_present() -> None:
    document = json.loads(soe_body())
    assert isinstance(document["run"], str) and isinstance(document["seq"], int)
    for key, bad in (("run", ""), ("run", 5), ("seq", -1), ("seq", "7"), ("seq", True)):
        with pytest.raises(MalformedMessage, match=key):
            parse_envelope(json.dumps({**document, key: bad}).encode())
    del document["run"], document["seq"]  # an earlier poller's message
    envelope = parse_envelope(json.dumps(document).encode())
    assert envelope.run is None and envelope.seq is None


def test_one_sequence_numbers_every_kind_in_making_order() -> None:
    sequence = RunSequence("run-a")
    first = reading_message(Reading(SOE, NOW, DIN, {"percentage": 1}), sequence=sequence)
    stream = meter_stream_message(NOW - 60, 1.0, AGGREGATES, DIN, sequence=sequence)
    assert (first.seq, stream.seq) == (1, 2) and first.run == stream.run == "run-a"
    assert stream.headers["x-pwbus-seq"] == 2 and json.loads(first.body)["seq"] == 1
    assert RunSequence().run != RunSequence().run


# --------------------------------------------------------------------------- ordering

A1, A2, A3 = Position("a", 1), Position("a", 2), Position("a", 3)
B1 = Position("b", 1)

ORDER_CASES = [
    ("higher seq of the run", [(A1, None), (A2, A1)], True),
    ("the same message again", [(A2, None), (A2, A2)], False),
    ("an older copy (resync answer)", [(A3, None), (A1, A3)], False),
    ("a new run (restarted poller)", [(A3, None), (B1, A3)], True),
    ("the old run after the new one", [(A3, None), (B1, A3), (A3, B1)], False),
    ("no position: arrival order", [(A3, None), (None, A3)], True),
    ("positioned after none", [(None, None), (A1, None)], True),
]


@pytest.mark.parametrize(("case", "steps", "last"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_run_order(case: str, steps: list, last: bool) -> None:
    order = RunOrder()
    results = [order.later(candidate, current) for candidate, current in steps]
    assert results[-1] is last


def test_position_from_the_envelope_else_the_headers() -> None:
    headers = {"x-pwbus-run": "h", "x-pwbus-seq": 4}
    assert position_of(headers, "e", 9) == Position("e", 9)
    assert position_of(headers) == Position("h", 4)
    assert position_of({"x-pwbus-run": b"h", "x-pwbus-seq": 4}) == Position("h", 4)
    for bad in ({"x-pwbus-run": "h"}, {"x-pwbus-run": "h", "x-pwbus-seq": -1}, {}, None):
        assert position_of(bad) is None


def test_the_proxy_state_is_never_frozen_by_a_message_time() -> None:
    state = ProxyState(clock=lambda: 0.0)
    sequence = RunSequence()

    def soe(at: float, value: float) -> None:
        message = reading_message(Reading(SOE, at, DIN, {"percentage": value}), sequence=sequence)
        state.update(parse_envelope(message.body))

    soe(NOW + 200, 10)  # a poller clock ahead (inside the window)...
    soe(NOW - 3000, 20)  # ...that NTP then steps back
    assert state.soe == 20
    resync = reading_message(Reading(SOE, NOW, DIN, {"percentage": 30}), sequence=sequence)
    soe(NOW, 40)
    state.update(parse_envelope(resync.body))  # an older copy arriving late
    assert state.soe == 40


def test_the_proxy_keeps_a_bounded_number_of_kinds() -> None:
    state = ProxyState()
    for index in range(MAX_KINDS + 10):
        path = f"/api/extra/k{index}"
        state.update(parse_envelope(reading_message(Reading(path, NOW, DIN, {})).body))
    assert len(state.kinds()) == MAX_KINDS
    assert state.refused.counts() == {TOO_MANY_KINDS: 10}


def test_refusals_are_counted_always_and_logged_once_a_minute_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RefusalLog(logging.getLogger("test.refusals"), clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="test.refusals")
    for _ in range(500):
        log.refused("forged", "from broker user 'mallory'", "powerwall.x.soe")
    log.refused("future", "dated 2099", "powerwall.x.meters")
    now[0] = 61.0
    log.refused("forged", "from broker user 'mallory'", "powerwall.x.soe")
    assert log.counts() == {"forged": 501, "future": 1} and log.total() == 502
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert "499 more refused" in lines[2] and "501 so far" in lines[2]
