"""Tesla's cloud for one account: tokens kept fresh, the energy site found, its endpoints.

One client serves the Owner API and the Fleet API (same paths under ``/api/1``; only the
base URL, the token endpoint and the OAuth client differ, all settings). It is built for
every cloud user of the project: the dispatcher's relay and Fleet API actuator, ``pwbus
pair``, and later the tariff uploader and the cloud tools.

Tokens: the access token is refreshed ``refresh_margin`` before it expires, and once more
when an answer says it expired anyway (401 ``token expired``), then the call is retried
once. The new refresh token (single-use) is saved before the retry. A second 401, a refused
refresh or no tokens at all is :class:`~powerwall_bus.shared.errors.CloudAuthError` with one
line telling the user to log in. After a 429 nothing is sent before the ``Retry-After`` has
passed: the client refuses locally (:class:`~powerwall_bus.shared.errors.CloudRateLimited`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerwall_bus.shared.errors import (
    CloudAuthError,
    CloudCommandRefused,
    CloudNotFound,
    CloudRateLimited,
    CloudTokenExpired,
)
from powerwall_bus.shared.settings import CloudSettings
from powerwall_bus.shared.tesla_cloud.tokens import (
    TOKEN_FILE,
    CloudTokens,
    TokenStore,
    tokens_from_answer,
)
from powerwall_bus.shared.tesla_cloud.transport import CloudTransport

__all__ = ["IDENTIFIER_TYPE_GATEWAY_DIN", "EnergySite", "TeslaCloud", "pick_site"]

_LOGGER = logging.getLogger(__name__)

IDENTIFIER_TYPE_GATEWAY_DIN = 1
OPERATION_MODES = ("self_consumption", "autonomous", "backup")


@dataclass(frozen=True)
class EnergySite:
    """One energy site of the account with a gateway (``products`` entry)."""

    site_id: int
    din: str  # gateway_id
    name: str = ""


def pick_site(products: Any, wanted: int | None = None) -> EnergySite:
    """The site to act on from a ``products`` answer: ``wanted``, else the only one.

    Entries without both ``energy_site_id`` and ``gateway_id`` (vehicles, solar-only sites)
    are not sites we can command. Raises :class:`CloudNotFound` naming the choices.
    """
    entries = products.get("response") if isinstance(products, Mapping) else None
    sites = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        site_id, din = entry.get("energy_site_id"), entry.get("gateway_id")
        if isinstance(site_id, int) and not isinstance(site_id, bool) and isinstance(din, str):
            sites.append(EnergySite(site_id, din, str(entry.get("site_name") or "")))
    if wanted is not None:
        for site in sites:
            if site.site_id == wanted:
                return site
        raise CloudNotFound(f"the account has no energy site {wanted} with a gateway")
    if len(sites) == 1:
        return sites[0]
    if not sites:
        raise CloudNotFound("the account has no energy site with a gateway")
    listed = ", ".join(f"{s.site_id} ({s.name or s.din})" for s in sites)
    raise CloudNotFound(
        f"the account has several energy sites ({listed}): set cloud.energy_site_id"
    )


class TeslaCloud:
    """The account's cloud API (Owner or Fleet), with its tokens in a :class:`TokenStore`."""

    def __init__(
        self,
        *,
        api_url: str,
        auth_url: str,
        client_id: str,
        store: TokenStore,
        site_id: int | None = None,
        refresh_margin: float = 300.0,
        timeout: float = 20.0,
        transport: CloudTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.auth_url = auth_url
        self.client_id = client_id
        self.store = store
        self._wanted_site = site_id
        self._margin = refresh_margin
        self._clock = clock
        self.transport = transport or CloudTransport(timeout=timeout, clock=clock)
        self._tokens: CloudTokens | None = None
        self._site: EnergySite | None = None
        self._quiet_until = 0.0
        self.refreshes = 0

    @classmethod
    def from_settings(cls, settings: CloudSettings, state_dir: Path, **kwargs: Any) -> TeslaCloud:
        """A client for the ``[cloud]`` settings, its tokens in ``state_dir``
        (``gateway.state_dir``)."""
        return cls(
            api_url=settings.api_url,
            auth_url=settings.auth_url,
            client_id=settings.client_id,
            store=TokenStore(state_dir / TOKEN_FILE),
            site_id=settings.site_id,
            refresh_margin=settings.refresh_margin,
            timeout=settings.timeout,
            **kwargs,
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self.transport.close()

    # ------------------------------------------------------------------ tokens

    def _current_tokens(self) -> CloudTokens:
        if self._tokens is None:
            self._tokens = self.store.load(self._clock())
        return self._tokens

    def refresh(self) -> CloudTokens:
        """Trade the refresh token for a new pair, saved before it is used."""
        tokens = self._current_tokens()
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "refresh_token": tokens.refresh,
        }
        try:
            answer = self.transport.call(
                "POST", self.auth_url, form=form, what="Tesla's token endpoint"
            )
        except (CloudAuthError, CloudCommandRefused) as exc:
            # 400 invalid_grant, 401 login_required: the refresh token is spent or revoked.
            raise CloudAuthError(
                f"Tesla refused the refresh token ({exc.error or exc.status}); log in again",
                status=exc.status,
                error=exc.error,
            ) from None
        fresh = tokens_from_answer(answer, self._clock())
        self.store.save(fresh)
        self._tokens = fresh
        self.refreshes += 1
        _LOGGER.info(
            "refreshed the Tesla cloud access token (valid %.0f min)",
            (fresh.expires_at - self._clock()) / 60,
        )
        return fresh

    def access_token(self) -> str:
        """A valid access token, refreshed first when it is about to expire."""
        tokens = self._current_tokens()
        if not tokens.access_valid(self._clock(), self._margin):
            tokens = self.refresh()
        return tokens.access

    # ------------------------------------------------------------------ calls

    def request(
        self, method: str, path: str, json_body: Any = None, *, timeout: float | None = None
    ) -> Any:
        """One authenticated call to ``/api/1/...``: refresh and retry once on an expired
        token; refuse locally while a 429's wait lasts."""
        now = self._clock()
        if now < self._quiet_until:
            raise CloudRateLimited(
                f"Tesla rate limited us; nothing is sent for {self._quiet_until - now:.0f} s more",
                until=self._quiet_until,
            )
        url = self.api_url + path
        for attempt in (1, 2):
            try:
                return self.transport.call(
                    method, url, token=self.access_token(), json_body=json_body, timeout=timeout
                )
            except CloudTokenExpired:
                if attempt == 2:
                    raise CloudAuthError(
                        "Tesla says the access token expired even after a refresh; log in again",
                        status=401,
                    ) from None
                _LOGGER.info("the Tesla cloud access token expired early; refreshing")
                self.refresh()
            except CloudRateLimited as limited:
                self._quiet_until = limited.until
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def region(self) -> Any:
        """``GET /api/1/users/region`` (Fleet API): the account's region and base URL."""
        return self.request("GET", "/api/1/users/region").get("response")

    def products(self) -> Any:
        """``GET /api/1/products``, as it came."""
        return self.request("GET", "/api/1/products")

    def site(self) -> EnergySite:
        """The energy site to act on (configured, or the only one), found once."""
        if self._site is None:
            self._site = pick_site(self.products(), self._wanted_site)
            _LOGGER.info("Tesla energy site %s, gateway %s", self._site.site_id, self._site.din)
        return self._site

    def _site_path(self, tail: str) -> str:
        return f"/api/1/energy_sites/{self.site().site_id}/{tail}"

    def site_info(self) -> dict[str, Any]:
        """``GET site_info``'s ``response`` object (reserve, mode, gateways, tariff, ...)."""
        response = self.request("GET", self._site_path("site_info")).get("response")
        if not isinstance(response, dict):
            raise CloudCommandRefused("site_info answered without a response object")
        return response

    def set_backup_reserve(self, percent: int) -> Any:
        """``POST backup`` ``{"backup_reserve_percent": percent}`` (0-100, the app's scale)."""
        if not 0 <= percent <= 100:
            raise ValueError("the backup reserve is 0 to 100 %")
        return self.request(
            "POST", self._site_path("backup"), {"backup_reserve_percent": int(percent)}
        )

    def set_operation_mode(self, mode: str) -> Any:
        """``POST operation`` ``{"default_real_mode": mode}``."""
        if mode not in OPERATION_MODES:
            raise ValueError(f"the operation mode is one of {', '.join(OPERATION_MODES)}")
        return self.request("POST", self._site_path("operation"), {"default_real_mode": mode})

    def grpc_command(
        self, category: str, request: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        """``POST command`` of type ``grpc_command`` (unsigned: e.g. ``authorization`` /
        ``add_authorized_client_request``, ``list_authorized_clients_request``)."""
        body = {
            "command_type": "grpc_command",
            "command_properties": {
                "message": {category: {request: dict(params or {})}},
                "identifier_type": IDENTIFIER_TYPE_GATEWAY_DIN,
            },
        }
        return self.request("POST", self._site_path("command"), body)

    def signed_command(self, body: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """``POST command`` with a ``grpc_signed_command`` body (see ``tedapi.cloud``)."""
        return self.request("POST", self._site_path("command"), dict(body), timeout=timeout)

    def device_command(self, body: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """``POST device_command`` (Owner API relay) with a ``tedapi.cloud`` body; the answer."""
        return self.request("POST", self._site_path("device_command"), dict(body), timeout=timeout)
