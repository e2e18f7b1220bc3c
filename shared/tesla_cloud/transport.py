"""The one boundary between requests and the project for Tesla's cloud: send, translate.

:meth:`CloudTransport.call` sends one JSON request and returns the JSON answer of a success.
Everything else becomes a :class:`~powerwall_bus.shared.errors.CloudError` here and nowhere
else (:func:`error_for`), keyed on the HTTP status and Tesla's short ``error`` string only:

=====  ======================================================  =========================
401    ``token expired (401)``                                 CloudTokenExpired (refresh)
401    anything else (``invalid bearer token``, ...)           CloudAuthError
402    payment required (Fleet API billing)                    CloudForbidden
403    missing scopes / ``invalid_scope``                      CloudForbidden
404                                                            CloudNotFound
408    the device is offline                                   CloudUnreachable
421    wrong region (``use base URL: ...`` names the right)    CloudWrongRegion
429    rate limited (``Retry-After``)                          CloudRateLimited
5xx    and 540 (device unexpected response)                    CloudUnreachable
4xx    any other                                               CloudCommandRefused
200    with ``response.code`` >= 400, or an ``error``          CloudCommandRefused
=====  ======================================================  =========================

No token or body is ever part of an exception message: messages carry the status and
Tesla's ``error`` string, cut short (Tesla's strings never echo credentials).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from powerwall_bus.shared.errors import (
    CloudAuthError,
    CloudCommandRefused,
    CloudError,
    CloudForbidden,
    CloudNotFound,
    CloudRateLimited,
    CloudTokenExpired,
    CloudUnreachable,
    CloudWrongRegion,
)
from powerwall_bus.shared.http import CloudSession, retry_after

__all__ = ["CloudTransport", "error_for"]

_TEXT = 160
#: A 429 without Retry-After: wait this long (Tesla's limits are per minute).
DEFAULT_RATE_WAIT = 60.0
_BASE_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(?::\d+)?")


def _error_text(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, str):
            return " ".join(error.split())[:_TEXT]
    return ""


def error_for(
    status: int, body: Any, now: float, wait: float | None = None, what: str = "Tesla"
) -> CloudError | None:
    """The project's error for one answer, None when it is a success."""
    error = _error_text(body)
    said = f": {error}" if error else ""
    if status == 401:
        if "expired" in error.lower():
            return CloudTokenExpired(f"{what}: the access token expired", status=401, error=error)
        return CloudAuthError(
            f"{what} refused the access token{said}; log in again", status=401, error=error
        )
    if status == 402:
        return CloudForbidden(
            f"{what}: payment required (the Fleet API application needs billing set up){said}",
            status=402,
            error=error,
        )
    if status == 403:
        return CloudForbidden(
            f"{what}: forbidden{said} (the token needs the energy_device_data and energy_cmds "
            "scopes)",
            status=403,
            error=error,
        )
    if status == 404:
        return CloudNotFound(f"{what}: not found (HTTP 404){said}", status=404, error=error)
    if status == 408:
        return CloudUnreachable(
            f"{what}: the gateway is offline (HTTP 408){said}", status=408, error=error
        )
    if status == 421:
        found = _BASE_URL.search(error)
        base = found.group(0) if found else ""
        hint = f"; set cloud.api_url to {base}" if base else "; see /api/1/users/region"
        return CloudWrongRegion(
            f"{what}: this account lives in another region{hint}", base_url=base
        )
    if status == 429:
        pause = DEFAULT_RATE_WAIT if wait is None else wait
        return CloudRateLimited(
            f"{what}: rate limited (HTTP 429), wait {pause:.0f} s", until=now + pause
        )
    if status >= 500:
        return CloudUnreachable(f"{what} answered HTTP {status}{said}", status=status, error=error)
    if status >= 400:
        return CloudCommandRefused(
            f"{what} refused the request (HTTP {status}){said}", status=status, error=error
        )
    if isinstance(body, Mapping):
        response = body.get("response")
        code = response.get("code") if isinstance(response, Mapping) else None
        if isinstance(code, int) and not isinstance(code, bool) and code >= 400:
            message = response.get("message") if isinstance(response, Mapping) else ""
            text = " ".join(str(message or "").split())[:_TEXT]
            return CloudCommandRefused(
                f"{what} refused the command (code {code}){': ' + text if text else ''}",
                status=status,
                error=text,
            )
        if error:
            return CloudCommandRefused(
                f"{what} answered an error{said}", status=status, error=error
            )
    return None


class CloudTransport(CloudSession):
    """JSON over one keep-alive session, every failure translated (see the module's table)."""

    def __init__(
        self,
        *,
        timeout: float = 20.0,
        user_agent: str = "powerwall-bus",
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            unreachable=CloudUnreachable,
            timeout=timeout,
            user_agent=user_agent,
            session=session,
            clock=clock,
        )

    def call(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        what: str = "Tesla",
        timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON of a success ({} for an empty body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.send(
            method, url, what=what, timeout=timeout, json=json_body, data=form, headers=headers
        )
        now = self.now()
        body: Any
        if not response.content.strip():
            body = {}
        else:
            try:
                body = response.json()
            except ValueError:
                body = None
        wait = retry_after(response.headers.get("Retry-After"), now)
        error = error_for(response.status_code, body, now, wait, what)
        if error is not None:
            raise error
        if body is None:
            raise CloudCommandRefused(
                f"{what} answered HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code,
            )
        return body
