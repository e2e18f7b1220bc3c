"""Is a child ready? An HTTPS GET with the standard library's HTTP client.

The simulator's certificate is made for the run and pinned by the poller, so this check
does not verify it: it only asks whether the server answers ``200``.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from powerwall_bus.shared.tls import unverified_client_context


def _get_status(url: str, timeout: float) -> int | None:
    context = unverified_client_context()
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):  # refused, reset, TLS or timeout; or a broken answer
        return None


async def answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET url`` answers 200 within ``timeout`` (run off the event loop)."""
    return await asyncio.to_thread(_get_status, url, timeout) == 200
