"""Running a fake HTTP service (the fake Octopus, the fake Tesla cloud) on 127.0.0.1.

Tests run one in a background thread (``with Runner(fake) as running:``); ``pwbus simulate``
starts one on its own loop next to the gateway simulator (:meth:`FakeServerRunner.start_async`).
A port of 0 takes a free one, read back as :attr:`FakeServerRunner.port` once listening.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

from powerwall_bus.shared.loop_thread import LoopThread

__all__ = ["FakeServerRunner"]


class FakeServerRunner:
    """One fake service's aiohttp application on ``host:port``, plain HTTP."""

    #: The name of the background thread (subclasses say which fake).
    thread_name = "fake-server"

    def __init__(self, fake: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        """``fake`` is any object whose ``app()`` makes its aiohttp application."""
        self.fake = fake
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._loop_thread: LoopThread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start_async(self) -> None:
        """Start listening on the current loop."""
        self._runner = web.AppRunner(
            self.fake.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self._runner.addresses:
            self.port = self._runner.addresses[0][1]

    async def stop_async(self) -> None:
        """Stop listening."""
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
