"""The one boundary between requests and the project for Octopus: POST a document, translate.

:meth:`GraphQLTransport.execute` sends one GraphQL document and returns ``(data, errors)``
for any answer that is GraphQL (Kraken answers HTTP 200 even for application errors).
Everything else becomes an :class:`~powerwall_bus.shared.errors.OctopusError` here and
nowhere else: requests' exceptions, 5xx, 429, a 403 that is an HTML block page (a rate
limit at the CDN, not a refused key), a 401/403 without GraphQL errors, a body that is not
JSON. :func:`error_for` maps one GraphQL error to its class by ``extensions.errorCode``.

No token, key or body is ever part of an exception message: messages carry the status, the
Kraken code and Kraken's short message (which never echoes credentials).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from powerwall_bus.shared.errors import (
    OctopusApiError,
    OctopusAuthError,
    OctopusDeviceError,
    OctopusError,
    OctopusRateLimited,
    OctopusRefreshRejected,
    OctopusTokenExpired,
    OctopusUnreachable,
)
from powerwall_bus.shared.http import CloudSession, retry_after

__all__ = ["GraphQLError", "GraphQLTransport", "error_for"]

RATE_LIMITED = frozenset({"KT-CT-1199"})
TOKEN_EXPIRED = frozenset({"KT-CT-1124", "KT-CT-1120"})
REFRESH_REJECTED = frozenset({"KT-CT-1134", "KT-CT-1135"})
AUTH_FAILED = frozenset({"KT-CT-1111", "KT-CT-1112", "KT-CT-1139", "KT-CT-1143", "OE-0103"})
DEVICE_NOT_FOUND = "KT-CT-4301"
NO_PLAN = "KT-CT-4340"
_MESSAGE_LENGTH = 160


@dataclass(frozen=True)
class GraphQLError:
    """One entry of a GraphQL ``errors`` list, as much of it as we use."""

    message: str
    code: str | None = None
    field: str | None = None  # the root field (alias) it is about; None: the whole document

    @classmethod
    def from_json(cls, item: Any) -> GraphQLError:
        """Read one error entry; anything missing stays None."""
        if not isinstance(item, Mapping):
            return cls(message=str(item)[:_MESSAGE_LENGTH])
        extensions = item.get("extensions")
        if not isinstance(extensions, Mapping):
            extensions = {}
        code = extensions.get("errorCode")
        path = item.get("path")
        field = path[0] if isinstance(path, list) and path and isinstance(path[0], str) else None
        message = " ".join(str(item.get("message", "")).split())[:_MESSAGE_LENGTH]
        return cls(message=message, code=code if isinstance(code, str) else None, field=field)

    @property
    def unknown_field(self) -> bool:
        """The API does not know a field we asked for (GraphQL validation)."""
        return self.code is None and "Cannot query field" in self.message

    def describe(self) -> str:
        """``KT-CT-1199 Too many requests.``, one line."""
        return f"{self.code} {self.message}" if self.code else self.message


def error_for(error: GraphQLError, now: float, wait: float | None = None) -> OctopusError:
    """The project's error for one GraphQL error (``wait``: a Retry-After, if one came)."""
    text = f"Octopus: {error.describe()}"
    code = error.code
    if code in RATE_LIMITED:
        return OctopusRateLimited(text, until=now + (wait or 0.0), code=code)
    if code in TOKEN_EXPIRED:
        return OctopusTokenExpired(text, code=code)
    if code in REFRESH_REJECTED:
        return OctopusRefreshRejected(text, code=code)
    if code in AUTH_FAILED:
        return OctopusAuthError(text, code=code)
    if code == DEVICE_NOT_FOUND:
        return OctopusDeviceError(text, code=code)
    return OctopusApiError(text, code=code, unknown_field=error.unknown_field)


def _graphql_body(response: requests.Response) -> dict[str, Any] | None:
    """The JSON object of a GraphQL answer (with ``data`` or ``errors``); None otherwise."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and ("data" in body or "errors" in body):
        return body
    return None


class GraphQLTransport(CloudSession):
    """POSTs documents to one GraphQL URL over one keep-alive session."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 20.0,
        user_agent: str = "powerwall-bus",
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            unreachable=OctopusUnreachable,
            timeout=timeout,
            user_agent=user_agent,
            session=session,
            clock=clock,
        )
        self.url = url

    def execute(
        self, document: str, variables: Mapping[str, Any], token: str | None = None
    ) -> tuple[dict[str, Any], list[GraphQLError]]:
        """Send one document; ``(data, errors)`` of a GraphQL answer, else an OctopusError."""
        headers = {"Authorization": token} if token else {}
        response = self.send(
            "POST",
            self.url,
            what="Octopus",
            json={"query": document, "variables": dict(variables)},
            headers=headers,
        )
        now = self.now()
        status = response.status_code
        body = _graphql_body(response)
        wait = retry_after(response.headers.get("Retry-After"), now)
        if status == 429:
            raise OctopusRateLimited("Octopus: HTTP 429", until=now + (wait or 0.0))
        if status >= 500:
            raise OctopusUnreachable(f"Octopus answered HTTP {status}")
        if body is None:
            if status == 403:
                # A CDN/WAF block page: the edge rate limits us. Our key is not in question.
                raise OctopusRateLimited(
                    "Octopus: HTTP 403 that is not GraphQL (a web firewall's block page)",
                    until=now + (wait or 0.0),
                )
            if status in (401, 403):
                raise OctopusAuthError(f"Octopus answered HTTP {status}")
            raise OctopusApiError(f"Octopus answered HTTP {status} without a GraphQL body")
        errors = [GraphQLError.from_json(item) for item in body.get("errors") or []]
        data = body.get("data")
        if not isinstance(data, dict):
            data = {}
        if status in (401, 403) and not errors:
            raise OctopusAuthError(f"Octopus answered HTTP {status}")
        return data, errors
