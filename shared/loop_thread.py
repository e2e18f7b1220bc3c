"""An asyncio event loop in a background thread, for running aiohttp servers from plain code.

The simulator in tests and benchmarks, and the proxy in tests, run this way: the caller
stays synchronous (pytest, a benchmark script) and hands coroutines and callables to the
loop. Stopping cancels whatever is still pending (e.g. requests held by a fault) quietly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """``loop = LoopThread("name").start(); loop.run(coro); loop.stop()``"""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def start(self) -> LoopThread:
        """Start the loop's thread."""
        self._thread.start()
        return self

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run a coroutine on the loop and return its result (or raise its exception)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run a plain function on the loop (e.g. a state update) and return its result."""

        async def wrapper() -> T:
            return function(*args)

        return self.run(wrapper(), timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, cancel what is pending, and wait for the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
