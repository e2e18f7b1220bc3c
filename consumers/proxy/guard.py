"""Connections one misbehaving client cannot use to take the proxy down.

aiohttp waits as long as a client likes for a request's headers, and accepts connections
until the process runs out of file descriptors; 1,100 connections that never finished their
headers made the proxy unreachable and asyncio then logged ``socket.accept() out of system
resource`` thousands of times a second. The guard sits between the listening socket and
aiohttp's protocol:

- **Header deadline.** A request's headers must be complete within ``header_timeout`` seconds
  of its first byte (or of the connection opening); otherwise the connection is closed. Idle
  keep-alive connections are aiohttp's own business (``keepalive_timeout``).
- **A cap with room for the well-behaved.** At ``max_connections`` open connections, a new one
  takes the place of the connection that has waited longest for its headers; only when every
  open connection is inside a request does the newcomer get a plain ``503`` and a close.
- **A quiet log.** Each kind of trouble is logged once per minute with a count of the rest.

:class:`HeaderWatch` is the pure part (is this connection in the middle of a request's
headers?); :class:`ConnectionGuard` and :class:`GuardedSite` are the asyncio shell.

Bodies are not parsed: bytes after a request's headers count as the start of the next
request, so a client that uploads a body and then sits idle is closed after
``header_timeout``. The proxy only serves GETs, so no well-behaved client notices.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from powerwall_bus.shared.throttle import Throttle

__all__ = [
    "ConnectionGuard",
    "GuardedSite",
    "HeaderWatch",
    "MalformedRequestLog",
    "raise_open_files_limit",
]

_LOGGER = logging.getLogger(__name__)

_END_OF_HEADERS = b"\r\n\r\n"
#: Connections asyncio accepts in one go (the listen backlog) before any of them is seen by
#: the guard: their descriptors exist before the guard can close one to make room.
BACKLOG = 128
#: Descriptors kept free: a connection is accepted, seen by the guard and, when it was
#: evicted, released in three turns of the event loop, each accepting up to BACKLOG; plus the
#: broker link, logs and the odd file.
RESERVED_DESCRIPTORS = 3 * BACKLOG + 64
#: Seconds between two log lines about the same kind of trouble.
LOG_INTERVAL = 60.0

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 5\r\n"
    b"Content-Length: 44\r\n\r\n"
    b'{"error": "too many connections; try again"}'
)
assert len(_BUSY.split(b"\r\n\r\n", 1)[1]) == 44


class HeaderWatch:
    """Whether a connection is partway through a request's headers, from the bytes it sent.

    A new connection is waiting for headers; ``\\r\\n\\r\\n`` ends them; any byte after that
    starts the next request. The last three bytes are kept so a terminator split across two
    reads is still seen.
    """

    def __init__(self) -> None:
        self.waiting = True
        self._tail = b""

    def feed(self, data: bytes) -> bool:
        """Take the next bytes received; True while a request's headers are incomplete."""
        if not data:
            return self.waiting
        buffer = self._tail + data
        end = buffer.rfind(_END_OF_HEADERS)
        if end >= 0:
            self.waiting = end + len(_END_OF_HEADERS) < len(buffer)
        else:
            self.waiting = True
        self._tail = buffer[-3:]
        return self.waiting


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to its hard limit; returns the limit now in force.

    Many systems start services with a soft limit of 1024 and a hard one far above it: a
    proxy for a whole house's dashboards should use what it is allowed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # a container may forbid it: keep the soft one
            _LOGGER.info("could not raise the open-files limit to %d: %s", hard, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 1_000_000


class ConnectionGuard:
    """Wraps aiohttp's protocol factory: header deadline, connection cap, eviction.

    Call it as the protocol factory given to ``loop.create_server``.
    """

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        header_timeout: float,
        max_connections: int,
        throttle: Throttle | None = None,
    ) -> None:
        self._factory = factory
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self._throttle = throttle or Throttle(LOG_INTERVAL)
        self.open: set[_GuardedProtocol] = set()
        #: Connections waiting for headers, oldest first (insertion order of the dict).
        self._waiting: collections.OrderedDict[_GuardedProtocol, None] = collections.OrderedDict()
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0

    def __call__(self) -> asyncio.Protocol:
        return _GuardedProtocol(self)

    # -- bookkeeping used by the connections

    def admit(self, newcomer: _GuardedProtocol) -> bool:
        """Room for one more? Evicts the longest-waiting header sender when full."""
        if len(self.open) < self.max_connections:
            return True
        if self._waiting:
            oldest, _ = self._waiting.popitem(last=False)
            self.evicted += 1
            self._say(
                "evict",
                "connection limit (%d) reached: closing connections that "
                "have not sent their request headers",
                self.max_connections,
            )
            oldest.close_now()
            return True
        self.refused += 1
        self._say(
            "refuse",
            "connection limit (%d) reached: answering new connections with 503",
            self.max_connections,
        )
        return False

    def waiting(self, connection: _GuardedProtocol, waiting: bool) -> None:
        if waiting:
            self._waiting.setdefault(connection, None)
        else:
            self._waiting.pop(connection, None)

    def timed_out_one(self) -> None:
        self.timed_out += 1
        self._say(
            "timeout",
            "closed a connection that sent no complete request headers within %.0f s",
            self.header_timeout,
        )

    def forget(self, connection: _GuardedProtocol) -> None:
        self.open.discard(connection)
        self._waiting.pop(connection, None)

    def _say(self, key: str, message: str, *args: Any) -> None:
        swallowed = self._throttle.allow(key)
        if swallowed is not None:
            _LOGGER.warning("%s%s", message % args, Throttle.suffix(swallowed))


class _GuardedProtocol(asyncio.Protocol):
    """One connection: aiohttp's handler inside, the guard's rules around it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._watch = HeaderWatch()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        guard = self._guard
        if not guard.admit(self):
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_BUSY)
            transport.close()
            return
        guard.open.add(self)
        self._inner = guard._factory()
        self._inner.connection_made(transport)
        self._set_waiting(True)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        self._set_waiting(self._watch.feed(data))
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._guard.forget(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # -- the deadline

    def _set_waiting(self, waiting: bool) -> None:
        self._guard.waiting(self, waiting)
        if not waiting:
            self._cancel_deadline()
        elif self._deadline is None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._guard.header_timeout, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        self._guard.timed_out_one()
        self.close_now()

    def close_now(self) -> None:
        """Drop the connection at once (no goodbye: the client is not listening anyway)."""
        self._guard.forget(self)
        if self._transport is not None and not self._transport.is_closing():
            abort = getattr(self._transport, "abort", None)
            if abort is not None:
                abort()
            else:
                self._transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        header_timeout: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._limits = (header_timeout, max_connections)
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        header_timeout, max_connections = self._limits
        self.guard = ConnectionGuard(
            server, header_timeout=header_timeout, max_connections=max_connections
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )


class MalformedRequestLog(logging.Filter):
    """aiohttp's ERROR and traceback for each malformed request, as one short throttled line.

    A bad request is the client's problem, answered with a 400 already; the log only needs
    to say it happened: ``malformed request from 10.0.0.9: BadHttpMessage: Invalid header
    token``, at most once a minute with the count of the rest. The client's bytes are never
    quoted (they may hold a token). Other records of the ``aiohttp.server`` logger pass.
    """

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self._throttle = throttle or Throttle(LOG_INTERVAL)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        swallowed = self._throttle.allow("malformed")
        if swallowed is None:
            return False
        reason = str(error.message).split("\n", 1)[0].split(":", 1)[0].strip()[:80]
        peer = record.getMessage().rpartition(" from ")[2][:60] or "a client"
        record.msg = "malformed request from %s: %s: %s%s"
        record.args = (peer, type(error).__name__, reason, Throttle.suffix(swallowed))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True

    @classmethod
    def install(cls) -> None:
        """Once per process, on aiohttp's server logger."""
        logger = logging.getLogger("aiohttp.server")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())
