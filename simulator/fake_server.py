"""Running one of the simulators' aiohttp applications on 127.0.0.1.

The gateway simulator (HTTPS), the fake Octopus and the fake Tesla cloud (plain HTTP) all
run through :class:`FakeServerRunner`: tests in a background thread
(``with Runner(fake) as running:``), ``pwbus simulate`` on its own loop
(:meth:`FakeServerRunner.start_async`). A port of 0 takes a free one, read back as
:attr:`FakeServerRunner.port` once listening.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

from powerwall_bus.shared.loop_thread import LoopThread

__all__ = ["FakeServerRunner"]


class FakeServerRunner:
    """One fake service's aiohttp application on ``host:port``; HTTPS with ``ssl_context``.

    Subclasses that keep something running beside the server (a clock tick) start it in
    :meth:`_started` and end it in :meth:`_stopping`, both on the server's loop.
    """

    #: The name of the background thread (subclasses say which fake).
    thread_name = "fake-server"

    def __init__(
        self,
        fake: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``fake`` is any object whose ``app()`` makes its aiohttp application."""
        self.fake = fake
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self._loop_thread: LoopThread | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start_async(self) -> None:
        """Start listening on the current loop."""
        self._runner = web.AppRunner(
            self.fake.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        if self._runner.addresses:
            self.port = self._runner.addresses[0][1]
        await self._started()

    async def _started(self) -> None:
        """Called on the server's loop once it listens."""

    async def _stopping(self) -> None:
        """Called on the server's loop before it stops listening."""

    async def stop_async(self) -> None:
        """Stop listening and close connections."""
        await self._stopping()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a state change on the server's loop (thread-safe control from tests)."""
        assert self._loop_thread is not None
        return self._loop_thread.call(function, *args)

    def start(self) -> Self:
        """Start in a background thread; returns once the port is open."""
        self._loop_thread = LoopThread(self.thread_name).start()
        try:
            self._loop_thread.run(self.start_async())
        except BaseException:
            self._loop_thread.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the background server."""
        if self._loop_thread is not None:
            with contextlib.suppress(Exception):
                self._loop_thread.run(self.stop_async())
            self._loop_thread.stop()
            self._loop_thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
