"""``pwbus pair``: the key the dispatcher signs with, from creation to a verified pairing.

The steps a user takes once per home, each a function here with its I/O passed in:

1. :func:`init_key`: an RSA-4096 key pair; the private key goes to the state folder, mode
   0600, and is never replaced (losing a paired key means pairing again at the house);
2. :func:`register`: the public half is registered through the cloud
   (``add_authorized_client``); the gateway keeps it pending until someone toggles a
   Powerwall's switch (off and on) within minutes, so the user is told exactly that, and the
   list is polled until the key is VERIFIED, the gateway's window closes, or time runs out;
3. :func:`list_keys` / :func:`remove_key`: the paired keys, and a removal signed by a
   verified key (through the cloud's ``grpc_signed_command``);
4. :func:`add_lan_key`: a second key added by trusted signature through any
   :class:`~powerwall_bus.consumers.dispatch.channel.SignedChannel` (over the LAN, no switch).

Only fingerprints (SHA-256 of the DER public key) are ever printed or logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from powerwall_bus.consumers.dispatch.channel import SignedChannel
from powerwall_bus.shared.errors import PairingFailed
from powerwall_bus.shared.tedapi.clients import (
    AuthorizedClient,
    AuthorizedClients,
    ClientKind,
    ClientRemoved,
    build_client_request,
    parse_client_response,
)
from powerwall_bus.shared.tedapi.keys import (
    fingerprint,
    generate_key,
    public_der,
    write_private_key,
)
from powerwall_bus.shared.tesla_cloud.authorized import list_clients, register_client
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud

__all__ = [
    "STATE_TIMEOUT",
    "add_lan_key",
    "client_line",
    "find_key",
    "init_key",
    "list_keys",
    "register",
    "remove_key",
    "signed_list",
]

_LOGGER = logging.getLogger(__name__)

STATE_TIMEOUT = 2  # PENDING_VERIFICATION_TIMEOUT: the gateway's window closed
SEND_TIMEOUT = 30.0

Say = Callable[[str], None]


def init_key(
    state_dir: Path, name: str, generate: Callable[[], rsa.RSAPrivateKey] = generate_key
) -> tuple[Path, str]:
    """Create the key pair: ``(private key file, fingerprint)``. Refuses an existing file."""
    key = generate()
    path = write_private_key(key, state_dir, name)
    return path, fingerprint(public_der(key))


def client_line(client: AuthorizedClient, own: bytes = b"") -> str:
    """One paired key for people: fingerprint, state, description, when added."""
    added = client.added.strftime("%Y-%m-%d %H:%M UTC") if client.added else "-"
    mark = "  (this key)" if own and client.public_key == own else ""
    return (
        f"{client.fingerprint}  {client.state_name:<28} {client.description or '-'}  {added}{mark}"
    )


def find_key(clients: Iterable[AuthorizedClient], wanted: str) -> AuthorizedClient:
    """The one key whose fingerprint starts with ``wanted`` (at least 8 hex digits)."""
    prefix = wanted.strip().lower().replace(":", "")
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        raise PairingFailed("give at least 8 hex digits of the key's fingerprint")
    found = [c for c in clients if c.fingerprint.startswith(prefix)]
    if not found:
        raise PairingFailed(f"no paired key has a fingerprint starting {prefix}")
    if len(found) > 1:
        raise PairingFailed(f"{len(found)} paired keys start {prefix}; give more digits")
    return found[0]


def _mine(clients: Sequence[AuthorizedClient], der: bytes) -> AuthorizedClient | None:
    return next((c for c in clients if c.public_key == der), None)


def register(
    cloud: TeslaCloud,
    key: rsa.RSAPrivateKey,
    description: str,
    *,
    timeout: float,
    poll: float,
    say: Say,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AuthorizedClient:
    """Register ``key`` through the cloud and wait for the switch toggle to verify it."""
    der = public_der(key)
    short = fingerprint(der)[:16]
    site = cloud.site()
    mine = _mine(list_clients(cloud), der)
    if mine is not None and mine.verified:
        say(f"key {short} is already paired (VERIFIED) with gateway {site.din}")
        return mine
    register_client(cloud, der, description)
    _LOGGER.info(
        "registered key %s with gateway %s, waiting for the switch toggle", short, site.din
    )
    minutes = max(1, int(timeout // 60))
    say(
        f"Key {short} is registered with gateway {site.din} (energy site {site.site_id}).\n"
        "Now go to a Powerwall and switch it OFF and back ON (its power switch) within about\n"
        "9 minutes: that proves you are at the house, and the gateway then trusts the key.\n"
        f"Waiting up to {minutes} min..."
    )
    deadline = clock() + timeout
    seen = "REGISTERED"
    while True:
        mine = _mine(list_clients(cloud), der)
        state = mine.state_name if mine is not None else "NOT LISTED"
        if state != seen:
            say(f"key {short}: {state}")
            seen = state
        if mine is not None and mine.verified:
            _LOGGER.info("key %s verified", short)
            return mine
        if mine is not None and mine.state == STATE_TIMEOUT:
            raise PairingFailed(
                f"key {short}: the gateway's window closed before a switch toggle; "
                "run pwbus pair register again"
            )
        if clock() >= deadline:
            raise PairingFailed(
                f"key {short} was not verified within {timeout:.0f} s (no switch toggle seen); "
                "run pwbus pair register again"
            )
        sleep(poll)


def list_keys(cloud: TeslaCloud) -> tuple[AuthorizedClient, ...]:
    """Every key the gateway knows, through the cloud."""
    return list_clients(cloud)


def remove_key(
    channel: SignedChannel,
    signer: rsa.RSAPrivateKey,
    din: str,
    target: bytes,
    *,
    now: float,
) -> None:
    """Remove the key ``target`` (DER PKCS#1), signed by ``signer`` (a verified key)."""
    body = build_client_request(ClientKind.REMOVE, din, signer, now, public_key=target)
    answer = parse_client_response(channel.send(body, timeout=SEND_TIMEOUT))
    if not isinstance(answer, ClientRemoved):
        raise PairingFailed("the gateway did not confirm the removal")
    _LOGGER.info("removed paired key %s", fingerprint(target)[:16])


def add_lan_key(
    channel: SignedChannel,
    signer: rsa.RSAPrivateKey,
    din: str,
    new_key: bytes,
    description: str,
    *,
    now: float,
) -> AuthorizedClient:
    """Add ``new_key`` (DER PKCS#1) on ``signer``'s authority (no switch toggle needed)."""
    body = build_client_request(
        ClientKind.ADD, din, signer, now, public_key=new_key, description=description
    )
    answer = parse_client_response(channel.send(body, timeout=SEND_TIMEOUT))
    if not isinstance(answer, AuthorizedClient):
        raise PairingFailed("the gateway did not answer with the added key")
    _LOGGER.info("added paired key %s over %s", answer.fingerprint[:16], channel.name)
    return answer


def signed_list(
    channel: SignedChannel, signer: rsa.RSAPrivateKey, din: str, *, now: float
) -> AuthorizedClients:
    """The paired keys as the gateway lists them to a signed request (LAN or relay)."""
    body = build_client_request(ClientKind.LIST, din, signer, now)
    answer = parse_client_response(channel.send(body, timeout=SEND_TIMEOUT))
    if not isinstance(answer, AuthorizedClients):
        raise PairingFailed("the gateway did not answer with its list of keys")
    return answer
