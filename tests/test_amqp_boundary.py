"""The broker boundary without a broker: translation of pika's failures, the reconnect loop,
and what a background thread's death does to its process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions as px
import pytest
from pika.adapters.utils.connection_workflow import (
    AMQPConnectorSocketConnectError,
    AMQPConnectorStackTimeout,
)

from powerwall_bus.shared import amqp
from powerwall_bus.shared.amqp import BrokerLink, from_pika, translate
from powerwall_bus.shared.errors import BrokerRefused, BusUnavailable, ConfigError
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.threads import ThreadFailures, guarded

SECRET = "s3cret-Broker-pw"
SETTINGS = AmqpSettings(url=f"amqp://pwbus:{SECRET}@127.0.0.1:5672/home", exchange="Tesla")


def _closed_by_broker(code: int, text: str) -> str:
    return repr(px.ConnectionClosedByBroker(code, text))


def _raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback ending in this file (as if our own code raised it)."""
    try:
        raise exc
    except BaseException as caught:
        return caught


# --------------------------------------------------------------------------- translation


REFUSALS = [
    (
        px.ProbableAuthenticationError(
            _closed_by_broker(403, "ACCESS_REFUSED - Login was refused using PLAIN")
        ),
        "amqp.url",
        "refused the login of user 'pwbus'",
    ),
    (
        px.ProbableAccessDeniedError(_closed_by_broker(530, "NOT_ALLOWED - vhost home not found")),
        "amqp.vhost",
        "virtual host 'home'",
    ),
    (
        px.ChannelClosedByBroker(
            403, "ACCESS_REFUSED - access to exchange 'Tesla' in vhost 'home' refused"
        ),
        "amqp.username",
        "access to exchange 'Tesla'",
    ),
    (
        px.ConnectionClosedByBroker(403, "ACCESS_REFUSED - user 'pwbus' was revoked"),
        "amqp.username",
        "was revoked",
    ),
    (
        px.ChannelClosedByBroker(
            406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'Tesla' in vhost"
        ),
        "amqp.exchange",
        "exists on amqp://pwbus@127.0.0.1:5672/home with other arguments",
    ),
]


@pytest.mark.parametrize(("exc", "key", "says"), REFUSALS)
def test_a_refusal_is_a_configuration_error_naming_the_setting(
    exc: BaseException, key: str, says: str
) -> None:
    error = translate(exc, SETTINGS)
    assert isinstance(error, BrokerRefused) and isinstance(error, ConfigError)
    assert error.key == key
    assert says in str(error)
    assert str(error).startswith(f"configuration: {key}: ")
    assert "\n" not in str(error) and SECRET not in str(error)


UNAVAILABLE = [
    AMQPConnectorStackTimeout("Timeout during AMQP handshake'127.0.0.1'/(2, 1, 6); ssl=False"),
    px.AMQPConnectionError("refused"),
    px.AMQPConnectionError(AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "refused"))),
    px.StreamLostError("Transport indicated EOF"),
    px.AMQPHeartbeatTimeout("No activity or too many missed heartbeats in the last 60 seconds"),
    px.ConnectionBlockedTimeout(),
    px.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure"),
    px.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'x'"),
    px.ChannelWrongStateError("Channel is closed."),
    # The "probable" refusals pika also raises when the link broke mid-handshake:
    px.ProbableAuthenticationError(repr(px.StreamLostError("Transport indicated EOF"))),
    px.ProbableAccessDeniedError(repr(px.StreamLostError("Transport indicated EOF"))),
    px.IncompatibleProtocolError("StreamLostError: ('Transport indicated EOF',)"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
    EOFError(),
]


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_anything_else_from_pika_or_the_socket_is_retried(exc: BaseException) -> None:
    error = translate(exc, SETTINGS)
    assert type(error) is BusUnavailable
    assert str(error).startswith("broker amqp://pwbus@127.0.0.1:5672/home unavailable (")
    assert type(exc).__name__ in str(error)
    assert "\n" not in str(error) and len(str(error)) < 300


def test_common_reasons_read_plainly() -> None:
    timeout = translate(AMQPConnectorStackTimeout("Timeout during AMQP handshake..."), SETTINGS)
    assert str(timeout).endswith("(no AMQP answer within 15 s (AMQPConnectorStackTimeout))")
    socket_error = AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "refused"))
    refused = translate(px.AMQPConnectionError(socket_error), SETTINGS)
    assert str(refused).endswith(
        "(cannot connect: ConnectionRefusedError: [Errno 111] refused (AMQPConnectionError))"
    )


def test_a_plain_exception_raised_inside_pika_counts_as_pika() -> None:
    with pytest.raises(TypeError) as caught:
        pika.ConnectionParameters(heartbeat="often")
    assert from_pika(caught.value)
    assert isinstance(translate(caught.value, SETTINGS), BusUnavailable)


def test_our_own_bugs_and_decisions_are_not_translated() -> None:
    assert translate(_raised(KeyError("routing_key")), SETTINGS) is None
    assert translate(_raised(AssertionError()), SETTINGS) is None
    decided = ConfigError("writer.queue", "exists with other arguments")
    assert translate(decided, SETTINGS) is decided


def test_connection_parameters_bound_every_wait() -> None:
    parameters = amqp.connection_parameters(SETTINGS, "pwbus-test")
    assert parameters.connection_attempts == 1
    assert parameters.socket_timeout == amqp.SOCKET_TIMEOUT
    assert parameters.stack_timeout == amqp.STACK_TIMEOUT
    assert parameters.blocked_connection_timeout == amqp.BLOCKED_TIMEOUT
    assert parameters.heartbeat == SETTINGS.heartbeat
    assert parameters.client_properties["connection_name"] == "pwbus-test"


# --------------------------------------------------------------------------- the loop


class FakeConnection:
    def __init__(self) -> None:
        self.is_open = True
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        self.is_open = False


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Script ``amqp.connect``: each call takes the next item (raised if an exception)."""
    script: list[Any] = []
    opened: list[FakeConnection] = []

    def fake_connect(settings: AmqpSettings, name: str) -> FakeConnection:
        step = script.pop(0)
        if isinstance(step, BaseException):
            error = translate(step, settings)
            raise error if error is not None else step
        connection = FakeConnection()
        opened.append(connection)
        return connection

    monkeypatch.setattr(amqp, "connect", fake_connect)
    yield script


def _link(stop: threading.Event, states: list[bool]) -> BrokerLink:
    def on_state(up: bool) -> str:
        states.append(up)
        return "detail-up" if up else "detail-down"

    return BrokerLink(
        SETTINGS,
        "pwbus-test",
        stop,
        backoff=Backoff(first=0.001, cap=0.001, jitter=0.0),
        on_state=on_state,
    )


def test_the_loop_survives_a_hung_broker_and_logs_once_per_change(
    connects: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    states: list[bool] = []
    served: list[FakeConnection] = []
    connects.extend([AMQPConnectorStackTimeout("handshake"), OSError(111, "refused"), "ok", "ok"])
    calls = iter([px.StreamLostError("EOF"), None])

    def serve() -> None:
        failure = next(calls)
        if failure is not None:
            raise failure
        stop.set()

    with caplog.at_level(logging.DEBUG, logger="powerwall_bus.shared.amqp"):
        _link(stop, states).run(served.append, serve)
    assert states == [False, True, False, True]
    assert len(served) == 2 and all(c.closed == 1 for c in served)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in levels if level == "WARNING"]
    assert len(warnings) == 2
    assert "AMQPConnectorStackTimeout" in warnings[0] and "detail-down" in warnings[0]
    assert "StreamLostError" in warnings[1]
    infos = [m for level, m in levels if level == "INFO"]
    assert [m.split(" ")[-2:] for m in infos] == [["s:", "detail-up"]] * 2
    assert infos[0].startswith("connected to broker amqp://pwbus@127.0.0.1:5672/home after ")
    assert infos[1].startswith("broker amqp://pwbus@127.0.0.1:5672/home is back after ")
    assert sum(level == "DEBUG" for level, _ in levels) == 1  # the second failed attempt
    assert all(SECRET not in m for _, m in levels)


def test_a_long_outage_is_recalled_every_five_minutes_not_at_every_attempt(
    connects: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    now = [0.0]

    def clock() -> float:
        now[0] += 20.0  # every look at the clock: 20 s later
        return now[0]

    connects.extend([OSError(111, "refused")] * 60 + ["ok"])
    link = BrokerLink(
        SETTINGS, "t", stop, backoff=Backoff(first=0.001, cap=0.001, jitter=0.0), clock=clock
    )
    with caplog.at_level(logging.INFO, logger="powerwall_bus.shared.amqp"):
        link.run(lambda connection: None, stop.set)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    reminders = [line for line in lines if "still unavailable after" in line]
    assert lines[0].endswith("reconnecting") and "refused" in lines[0]
    # 60 failures over about 40 minutes of this clock: a reminder every 5 minutes, no more.
    assert 5 <= len(reminders) <= 9, lines
    assert lines[-1].startswith("connected to broker ")
    assert len(lines) == len(reminders) + 2


def test_a_refusal_ends_the_loop(connects: list[Any]) -> None:
    connects.append(
        px.ProbableAuthenticationError(_closed_by_broker(403, "ACCESS_REFUSED - Login refused"))
    )
    with pytest.raises(BrokerRefused, match=r"^configuration: amqp\.url: "):
        _link(threading.Event(), []).run(lambda c: None, lambda: None)


def test_a_refusal_while_declaring_ends_the_loop(connects: list[Any]) -> None:
    connects.append("ok")

    def open_session(connection: Any) -> None:
        raise px.ChannelClosedByBroker(403, "ACCESS_REFUSED - configure access refused")

    with pytest.raises(BrokerRefused, match=r"amqp\.username"):
        _link(threading.Event(), []).run(open_session, lambda: None)


def test_a_bug_in_the_client_is_not_retried(connects: list[Any]) -> None:
    connects.append("ok")

    def serve() -> None:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        _link(threading.Event(), []).run(lambda c: None, serve)


def test_stop_during_an_outage_ends_the_loop_without_waiting(connects: list[Any]) -> None:
    stop = threading.Event()
    states: list[bool] = []
    connects.append("ok")

    def serve() -> None:
        stop.set()
        raise px.StreamLostError("EOF")

    link = BrokerLink(SETTINGS, "t", stop, backoff=Backoff(first=3600.0), on_state=states.append)
    link.run(lambda c: None, serve)  # would hang for an hour if it waited
    assert states == [True, False] and link.outages == 1


# --------------------------------------------------------------------------- threads


def _run_guarded(target: Callable[[], None]) -> ThreadFailures:
    woken = threading.Event()
    failures = ThreadFailures(woken.set)
    thread = threading.Thread(target=guarded(target, "worker", failures))
    thread.start()
    thread.join(5)
    assert woken.is_set() and failures.failed.is_set()
    return failures


def test_a_thread_ending_with_a_configuration_error_hands_it_to_the_main_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def target() -> None:
        raise BrokerRefused("amqp.url", "refused")

    failures = _run_guarded(target)
    with pytest.raises(BrokerRefused):
        failures.exit_status()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # pwbus prints it


def test_a_thread_dying_of_a_bug_is_one_error_line_and_status_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table: dict[str, int] = {}

    def target() -> None:
        table["missing"]

    with caplog.at_level(logging.INFO):
        failures = _run_guarded(target)
    assert failures.exit_status() == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert "thread worker died: KeyError: 'missing' (test_amqp_boundary.py:" in message
    assert "\n" not in message


def test_no_failure_is_status_0() -> None:
    assert ThreadFailures().exit_status() == 0
