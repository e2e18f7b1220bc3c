"""The Octopus (Kraken) client: log in with the API key, keep the tokens fresh, follow the
car's planned dispatches.

Tokens. An access token is used until five minutes before it expires, then renewed with
the refresh token; a refused refresh token (KT-CT-1134/1135, or anything else Octopus says
about it) falls back to the API key, as does a refresh token past its expiry. An expired
token on a query (KT-CT-1124) is renewed and the query sent again, once; a token refused
outright (KT-CT-1111/1112/1139, HTTP 401) is dropped, the key logs in again and the query
is sent again, once. Only a refused *API key* is :class:`OctopusAuthError` to the caller.
Tokens are saved after every change (:class:`~.tokens.TokenStore`, mode 0600).

Device. The configured ``device_id`` or, without one, the single live non-meter device of
the account (``devices``). Every poll asks for the device and its plan in one document: a
device that is gone (KT-CT-4301, or an empty answer: re-registering a car gives it a new
id) is discovered again at once, and the account's devices are listed again every hour.

Plan. ``flexPlannedDispatches``; KT-CT-4340 ("Unable to fetch planned dispatches") is an
empty plan, not a failure. Only when the API no longer knows that field does the client
fall back to the deprecated ``plannedDispatches(accountNumber)`` (for an hour, then it
tries the current query again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from powerwall_bus.shared.errors import (
    OctopusApiError,
    OctopusAuthError,
    OctopusDeviceError,
    OctopusError,
    OctopusRateLimited,
    OctopusTokenExpired,
)
from powerwall_bus.shared.octopus import documents
from powerwall_bus.shared.octopus.documents import Device
from powerwall_bus.shared.octopus.plan import DispatchPlan
from powerwall_bus.shared.octopus.tokens import Tokens, TokenStore, access_expiry, key_id
from powerwall_bus.shared.octopus.transport import (
    NO_PLAN,
    GraphQLError,
    GraphQLTransport,
    error_for,
)

__all__ = ["DEFAULT_URL", "OctopusClient", "PlanResult"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_URL = "https://api.octopus.energy/v1/graphql/"
#: Renew the access token when less than this is left (seconds).
REFRESH_MARGIN = 300.0
#: List the account's devices again this often, and retry the current query this long
#: after falling back to the legacy one.
REDISCOVER_EVERY = 3600.0
LEGACY_FOR = 3600.0


@dataclass(frozen=True)
class PlanResult:
    """One successful look at the plan."""

    plan: DispatchPlan
    source: str  # "flex" or "legacy"
    device_state: str | None = None  # status.currentState of the device, when asked
    note: str | None = None  # e.g. KT-CT-4340: Octopus could not fetch a plan (it is empty)


def _global_problem(errors: list[GraphQLError], now: float) -> OctopusError | None:
    """The first error that is about the whole request (rate limit, token, key), if any."""
    translated = [error_for(error, now) for error in errors]
    for wanted in (OctopusRateLimited, OctopusTokenExpired, OctopusAuthError):
        for error in translated:
            if isinstance(error, wanted):
                return error
    return None


class OctopusClient:
    """One Octopus account's planned dispatches, over one keep-alive HTTP session."""

    def __init__(
        self,
        *,
        api_key: str,
        account: str,
        device_id: str = "",
        url: str = DEFAULT_URL,
        token_file: Path | None = None,
        timeout: float = 20.0,
        user_agent: str = "powerwall-bus",
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._api_key = api_key
        self._wanted_device = device_id
        self._clock = clock
        self._transport = GraphQLTransport(
            url, timeout=timeout, user_agent=user_agent, session=session, clock=clock
        )
        self._store = TokenStore(token_file) if token_file is not None else None
        self._tokens = self._store.load(api_key) if self._store else Tokens(key=key_id(api_key))
        self.device: Device | None = None
        self._rediscover_at = 0.0
        self._legacy_until = 0.0
        self.logins = {"api_key": 0, "refresh": 0}

    def close(self) -> None:
        """Close the HTTP session."""
        self._transport.close()

    @property
    def requests(self) -> int:
        """HTTP requests sent so far."""
        return self._transport.requests

    # ------------------------------------------------------------------ tokens

    def _obtain(self, credential: Mapping[str, str], with_key: bool) -> None:
        """``obtainKrakenToken`` with the API key or the refresh token; keeps the answer."""
        now = self._clock()
        data, errors = self._transport.execute(
            documents.TOKEN_MUTATION, {"input": dict(credential)}
        )
        self.logins["api_key" if with_key else "refresh"] += 1
        if errors:
            error = error_for(errors[0], now)
            if isinstance(error, OctopusRateLimited) or not with_key:
                raise error
            raise OctopusAuthError(
                f"Octopus refused the API key ({errors[0].describe()}): check "
                "octopus_energy.api_key (PWBUS_OCTOPUS_API_KEY)",
                code=error.code,
            )
        answer = data.get("obtainKrakenToken")
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or not isinstance(token, str) or not token:
            raise OctopusApiError("obtainKrakenToken answered without a token")
        refresh = answer.get("refreshToken")
        refresh_expires = answer.get("refreshExpiresIn")
        self._tokens = Tokens(
            access=token,
            access_expires=access_expiry(token, answer.get("payload"), now),
            refresh=refresh if isinstance(refresh, str) else "",
            refresh_expires=float(refresh_expires)
            if isinstance(refresh_expires, int | float) and not isinstance(refresh_expires, bool)
            else 0.0,
            key=key_id(self._api_key),
        )
        self._tokens.redact()
        if self._store is not None:
            self._store.save(self._tokens)

    def _token(self) -> str:
        """A valid access token: the one we hold, a refreshed one, or one for the key."""
        now = self._clock()
        if self._tokens.access_valid(now, REFRESH_MARGIN):
            return self._tokens.access
        if self._tokens.refresh_valid(now):
            try:
                self._obtain({"refreshToken": self._tokens.refresh}, with_key=False)
                return self._tokens.access
            except (OctopusAuthError, OctopusApiError) as exc:
                _LOGGER.info(
                    "Octopus refused the refresh token (%s); logging in with the API key",
                    exc.code or "no code",
                )
        self._obtain({"APIKey": self._api_key}, with_key=True)
        return self._tokens.access

    def _forget(self, refresh_too: bool) -> None:
        self._tokens.access, self._tokens.access_expires = "", 0.0
        if refresh_too:
            self._tokens.refresh, self._tokens.refresh_expires = "", 0.0

    def call(
        self, document: str, variables: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[GraphQLError]]:
        """Send an authorised document: ``(data, errors)`` without the errors about the whole
        request, which are handled (token renewed, sent again once) or raised."""
        for attempt in (1, 2):
            token = self._token()
            try:
                data, errors = self._transport.execute(document, variables, token)
                problem = _global_problem(errors, self._clock())
            except OctopusAuthError as exc:  # HTTP 401/403 carrying no GraphQL errors
                data, errors, problem = {}, [], exc
            if problem is None:
                return data, errors
            if attempt == 1 and isinstance(problem, OctopusTokenExpired):
                self._forget(refresh_too=False)
                continue
            if attempt == 1 and isinstance(problem, OctopusAuthError):
                self._forget(refresh_too=True)
                continue
            if isinstance(problem, OctopusAuthError):
                raise OctopusAuthError(
                    f"Octopus refused a fresh token ({problem.code or problem}): does the "
                    "API key belong to account " + self.account + "?",
                    code=problem.code,
                )
            raise problem
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ devices

    def discover(self) -> Device:
        """List the account's devices and pick ours (see :func:`documents.pick_device`)."""
        data, errors = self.call(documents.DEVICES_QUERY, {"accountNumber": self.account})
        if errors:
            raise error_for(errors[0], self._clock())
        device = documents.pick_device(
            documents.devices_from(data.get("devices")), self._wanted_device
        )
        previous, self.device = self.device, device
        self._rediscover_at = self._clock() + REDISCOVER_EVERY
        if previous is None:
            _LOGGER.info("following Octopus device %s (%s)", device.id, device.device_type)
        elif previous.id != device.id:
            _LOGGER.warning(
                "the Octopus device id changed from %s to %s (registered again?)",
                previous.id,
                device.id,
            )
        return device

    # ------------------------------------------------------------------ the plan

    def plan(self) -> PlanResult:
        """The current plan; raises an OctopusError when there is none to be had."""
        now = self._clock()
        if now < self._legacy_until:
            return self._legacy()
        if self.device is None or now >= self._rediscover_at:
            self.discover()
        try:
            return self._flex()
        except OctopusDeviceError:
            self.discover()  # the registration changed: find it again, ask once more
            return self._flex()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _flex(self) -> PlanResult:
        assert self.device is not None
        device_id = self.device.id
        data, errors = self.call(
            documents.PLAN_QUERY, {"accountNumber": self.account, "deviceId": device_id}
        )
        if any(error.unknown_field for error in errors):
            self._legacy_until = self._clock() + LEGACY_FOR
            _LOGGER.warning(
                "Octopus no longer answers flexPlannedDispatches; using the deprecated "
                "plannedDispatches for the next %.0f min",
                LEGACY_FOR / 60,
            )
            return self._legacy()
        note = None
        for error in errors:
            if error.code == NO_PLAN and error.field in (None, "flexPlannedDispatches"):
                note = NO_PLAN  # Octopus could not fetch the plan: an empty one, no failure
                continue
            raise error_for(error, self._clock())
        devices = data.get("devices")
        if isinstance(devices, list) and not devices:
            raise OctopusDeviceError(f"Octopus no longer knows device {device_id}")
        state = None
        found = documents.devices_from(devices)
        if found:
            state = found[0].state
        plan = documents.flex_plan(device_id, data.get("flexPlannedDispatches"), self._now())
        return PlanResult(plan, "flex", state, note)

    def _legacy(self) -> PlanResult:
        data, errors = self.call(documents.LEGACY_QUERY, {"accountNumber": self.account})
        if errors:
            raise error_for(errors[0], self._clock())
        device_id = self.device.id if self.device is not None else ""
        plan = documents.legacy_plan(device_id, data.get("plannedDispatches"), self._now())
        return PlanResult(plan, "legacy")
