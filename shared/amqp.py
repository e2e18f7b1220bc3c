"""The broker boundary: how every process connects to RabbitMQ, and what pika's failures mean.

Every bus client (the proxy's subscription, the poller's publisher, the MySQL writer) opens
its connection here and keeps it up with one :class:`BrokerLink`, so there is exactly one
answer to "what do we do when the broker ...":

* **refuses us** (wrong user or password, no such virtual host, no permission to declare,
  bind or publish): :class:`~powerwall_bus.shared.errors.BrokerRefused`, a configuration
  error naming the setting. It is raised, never retried: the same settings would be refused
  forever, so the process ends with exit status 2 and the stack stops;
* **is away, hung or drops us** (refused or reset TCP, a broker that accepts and never
  speaks AMQP, a missed heartbeat, a blocked connection, a channel it closes for any other
  reason): :class:`~powerwall_bus.shared.errors.BusUnavailable`, retried with the shared
  back-off for as long as it takes.

"Anything from pika" means any exception whose class pika defines (not only ``AMQPError``:
a broker hung for 15 s makes pika raise ``AMQPConnectorStackTimeout``, a plain
``Exception``), any ``OSError`` or ``EOFError`` from the socket, and any exception raised
inside pika's own code. An exception raised by *our* code (a callback, a bug) is none of
these and propagates: the thread's guard takes the process down loudly instead of a
reconnect loop hiding it.

pika logs each failed connection attempt as several ERROR records with a traceback. Those
say what this module already says in one line, so its loggers are kept to CRITICAL unless
the process logs at DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import (
    AMQPConnectorSocketConnectError,
    AMQPConnectorStackTimeout,
)

from powerwall_bus.shared.errors import BrokerRefused, BusUnavailable, PwbusError
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.throttle import Reminder

_LOGGER = logging.getLogger(__name__)

_PIKA_DIR = os.path.dirname(os.path.abspath(pika.__file__)) + os.sep
_REASON_LENGTH = 200

#: Seconds for the TCP connect, and for the whole TCP + AMQP handshake: a broker that
#: accepts and never answers costs one attempt this long, then it is retried.
SOCKET_TIMEOUT = 5.0
STACK_TIMEOUT = 15.0
#: A broker that blocks our publishing (memory or disk alarm) this long is treated as lost.
BLOCKED_TIMEOUT = 60.0


def connection_parameters(settings: AmqpSettings, name: str) -> pika.URLParameters:
    """pika parameters for the broker, with a connection name and bounded waits."""
    parameters = pika.URLParameters(settings.url)
    parameters.heartbeat = settings.heartbeat
    parameters.connection_attempts = 1  # retries are ours, with back-off and one log line
    parameters.socket_timeout = SOCKET_TIMEOUT
    parameters.stack_timeout = STACK_TIMEOUT
    parameters.blocked_connection_timeout = BLOCKED_TIMEOUT
    parameters.client_properties = {"connection_name": name, "product": "powerwall-bus"}
    return parameters


# --------------------------------------------------------------------------- translation


def from_pika(exc: BaseException) -> bool:
    """True when ``exc`` came out of pika or the socket under it, not out of our code."""
    if isinstance(exc, OSError | EOFError):
        return True
    if type(exc).__module__.partition(".")[0] == "pika":
        return True
    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    if innermost is None:
        return False
    return os.path.abspath(innermost.tb_frame.f_code.co_filename).startswith(_PIKA_DIR)


def describe(exc: BaseException) -> str:
    """A short, one-line reason for a broker failure (pika's texts hold no credentials)."""
    if isinstance(exc, AMQPConnectorStackTimeout):
        return f"no AMQP answer within {STACK_TIMEOUT:g} s (AMQPConnectorStackTimeout)"
    inner = exc.args[0] if len(exc.args) == 1 else None
    if isinstance(exc, pika.exceptions.AMQPConnectionError) and isinstance(
        inner, AMQPConnectorSocketConnectError
    ):
        return f"cannot connect: {describe(inner.exception)} (AMQPConnectionError)"
    text = str(exc).strip() or "; ".join(str(arg) for arg in exc.args if str(arg).strip())
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    reason = " ".join(reason.split())
    return reason if len(reason) <= _REASON_LENGTH else reason[: _REASON_LENGTH - 3] + "..."


def _closed_by_broker(exc: BaseException) -> bool:
    """pika's "probable" login and vhost errors also cover a connection that merely broke
    during the handshake; only a close *sent by the broker* is a refusal. pika keeps the
    original close as text in the exception's argument, so that is where we look."""
    return "ConnectionClosedByBroker" in str(exc)


def refusal(exc: BaseException, settings: AmqpSettings) -> BrokerRefused | None:
    """The configuration error ``exc`` stands for, or None when it is not a refusal."""
    where = settings.safe_url
    user = settings.username
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError) and _closed_by_broker(exc):
        return BrokerRefused(
            "amqp.url",
            f"the broker {where} refused the login of user {user!r}: wrong user name or "
            "password (set them in amqp.url, or amqp.username and amqp.password)",
        )
    if isinstance(exc, pika.exceptions.AuthenticationError):
        return BrokerRefused(
            "amqp.url", f"the broker {where} offers no login method we can use ({exc})"
        )
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError) and _closed_by_broker(exc):
        return BrokerRefused(
            "amqp.vhost",
            f"the broker {where} refused user {user!r} the virtual host {settings.vhost!r}: "
            "it does not exist or the user has no permissions there",
        )
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker | pika.exceptions.ChannelClosed):
        code = getattr(exc, "reply_code", None)
        text = " ".join(str(getattr(exc, "reply_text", "")).split())
        if code == 403:  # ACCESS_REFUSED: configure, write or read permission missing
            return BrokerRefused(
                "amqp.username",
                f"the broker {where} refused user {user!r} an operation: {text} "
                "(grant the user configure, write and read permissions on the virtual host)",
            )
        if code == 406 and "for exchange" in text:  # declared elsewhere with another type
            return BrokerRefused(
                "amqp.exchange",
                f"the exchange {settings.exchange!r} exists on {where} with other arguments "
                f"({text}); delete it or pick another name",
            )
    return None


def translate(exc: BaseException, settings: AmqpSettings) -> PwbusError | None:
    """The project's error for a failure in a broker client; None when it is not ours to
    translate (a bug in our own code: let it propagate)."""
    if isinstance(exc, PwbusError):
        return exc  # already decided by the client (e.g. a ConfigError for its queue)
    if not from_pika(exc):
        return None
    refused = refusal(exc, settings)
    if refused is not None:
        return refused
    return BusUnavailable(f"broker {settings.safe_url} unavailable ({describe(exc)})")


# --------------------------------------------------------------------------- connections


def _quiet_pika() -> None:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("pika").setLevel(logging.CRITICAL)


def connect(settings: AmqpSettings, name: str) -> pika.BlockingConnection:
    """A new blocking connection; raises BrokerRefused or BusUnavailable, nothing from pika."""
    _quiet_pika()
    try:
        return pika.BlockingConnection(connection_parameters(settings, name))
    except Exception as exc:
        error = translate(exc, settings)
        if error is None:
            raise
        raise error from exc


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close ``connection`` if it is open; a connection that is already broken is fine."""
    if connection is None:
        return
    with contextlib.suppress(Exception):  # closing a dead connection can raise anything
        if connection.is_open:
            connection.close()


# --------------------------------------------------------------------------- reconnecting


StateHook = Callable[[bool], str | None]


class BrokerLink:
    """Keep one client connected until its work is done; the only reconnect loop there is.

    :meth:`run` connects, calls ``open_session(connection)`` (declare, bind, consume: what
    the client needs on every new connection), then ``serve()`` until it returns, which
    means the client is done (it was asked to stop). When either raises something from pika
    or the socket, the connection is dropped, ``on_state(False)`` is told once per outage,
    and after the back-off (reset by every successful ``open_session``) it starts over.
    :class:`BrokerRefused` (and any ConfigError the client raises) ends :meth:`run` by
    propagating; so does any exception from the client's own code.

    ``on_state(up)`` is called on every change of state and may return a short phrase for
    the one log line of that change ("publishing 40 held messages").
    """

    def __init__(
        self,
        settings: AmqpSettings,
        name: str,
        stop: threading.Event,
        *,
        backoff: Backoff | None = None,
        on_state: StateHook | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = name
        self._stop = stop
        self._backoff = backoff or Backoff(first=1.0, cap=30.0, jitter=0.5)
        self._on_state: StateHook = on_state or (lambda up: None)
        self._log = logger or _LOGGER
        self._clock = clock
        self._up: bool | None = None  # None: not tried yet
        self._ever_up = False
        self._down_since = 0.0
        self._attempt_started = 0.0
        self._reminder = Reminder(clock=clock)
        self.outages = 0

    @property
    def up(self) -> bool:
        """True while a session is open."""
        return bool(self._up)

    def run(
        self,
        open_session: Callable[[pika.BlockingConnection], None],
        serve: Callable[[], None],
        *,
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        """Connect and serve until done; ``wanted()`` (default: not stopped) says whether
        another connection is worth making."""
        wanted = wanted or (lambda: not self._stop.is_set())
        while wanted():
            connection: pika.BlockingConnection | None = None
            try:
                self._attempt_started = self._clock()
                connection = connect(self.settings, self.name)
                open_session(connection)
                self._opened()
                serve()
                return
            except Exception as exc:
                error = translate(exc, self.settings)
                if error is None:
                    raise  # our own bug: the thread's guard reports it
                if not isinstance(error, BusUnavailable):
                    if error is exc:
                        raise
                    raise error from exc
                close_quietly(connection)
                connection = None
                delay = self._lost(error)
                if self._stop.is_set():
                    return
                self._stop.wait(delay)
            finally:
                close_quietly(connection)

    def _opened(self) -> None:
        self._backoff.succeeded()
        back, self._ever_up, self._up = self._ever_up, True, True
        detail = self._on_state(True)
        suffix = f": {detail}" if detail else ""
        if self.outages == 0:  # the first attempt worked
            self._log.info(
                "connected to broker %s as %s%s", self.settings.safe_url, self.name, suffix
            )
            return
        self._log.info(
            "broker %s is back after %.0f s%s" if back else "connected to broker %s after %.0f s%s",
            self.settings.safe_url,
            self._clock() - self._down_since,
            suffix,
        )

    def _lost(self, error: BusUnavailable) -> float:
        delay = self._backoff.next_delay()
        was, self._up = self._up, False
        if was is False:
            if self._reminder.due():
                self._log.warning(
                    "broker %s still unavailable after %.0f s (%d attempts): %s",
                    self.settings.safe_url,
                    self._clock() - self._down_since,
                    self._backoff.failures,
                    error,
                )
            else:
                self._log.debug(
                    "%s; attempt %d, next in %.1f s", error, self._backoff.failures, delay
                )
            return delay
        # Never connected: down since the first attempt; else since the loss was noticed.
        self._down_since = self._clock() if was else self._attempt_started
        self.outages += 1
        self._reminder.start()
        detail = self._on_state(False)
        self._log.warning("%s; %sreconnecting", error, f"{detail}; " if detail else "")
        return delay
