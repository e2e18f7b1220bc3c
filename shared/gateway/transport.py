"""TLS for the gateway: accept its self-signed certificate, or pin its fingerprint.

requests silently replaces ``verify=False`` with the CA bundle named in REQUESTS_CA_BUNDLE
or CURL_CA_BUNDLE when those are set (they are on many machines), which makes every call
to a self-signed gateway fail. The adapter below decides TLS itself and ignores the
environment, so the gateway settings mean the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from powerwall_bus.shared.tls import unverified_client_context

# Accepting the gateway's self-signed certificate is a deliberate, configured choice
# (pin it with tls_fingerprint); a warning on every poll would only bury real problems.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class GatewayAdapter(HTTPAdapter):
    """An HTTPS adapter with one kept-alive connection and the project's TLS rules.

    With ``fingerprint`` set (SHA-256, lower-case hex), urllib3 compares the presented
    certificate after the handshake and refuses the connection on a mismatch.
    """

    def __init__(self, fingerprint: str = "") -> None:
        self._fingerprint = fingerprint
        # One connection: the gateway is polled by one thread, never concurrently.
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = unverified_client_context()
        if self._fingerprint:
            pool_kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = False  # never a CA bundle from the environment
        kwargs["cert"] = None
        return super().send(request, **kwargs)


def new_session(fingerprint: str = "") -> requests.Session:
    """A requests session for the gateway that ignores proxy and CA-bundle environment."""
    session = requests.Session()
    session.trust_env = False  # no REQUESTS_CA_BUNDLE, no HTTP(S)_PROXY, no .netrc
    session.verify = False
    adapter = GatewayAdapter(fingerprint)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"Accept": "application/json", "User-Agent": "powerwall-bus"})
    return session


def fetch_fingerprint(host: str, port: int, timeout: float) -> str:
    """SHA-256 (hex) of the certificate the server at host:port presents."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        unverified_client_context().wrap_socket(
            raw, server_hostname=host if _is_name(host) else None
        ) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return hashlib.sha256(der).hexdigest()


def _is_name(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return True
    return False
