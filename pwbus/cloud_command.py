"""``pwbus cloud``: log in to Tesla's cloud and look at what the account holds (light: requests
and cryptography load in ``run``).

``pwbus cloud login | refresh | logout | products | jwks | verify``. The tokens are
``tesla-cloud-tokens.json`` in the state folder (``gateway.state_dir``, mode 0600), the file
every cloud user of the project reads (``pwbus pair``, ``pwbus tariff``, the dispatcher's
cloud road); the endpoints are the ``[cloud]`` settings. The OAuth details a user rarely
changes (the authorize URL, the issuer, the redirect URI, the scopes) are flags with defaults
derived from ``cloud.auth_url`` and ``cloud.client_id``, not settings: nothing but a login
uses them.

Wrong input is refused with one line and exit status 2: a callback URL that is not this
login's (another ``state``, another issuer, not a callback), a token that fails
verification (expired, another issuer or audience, a signature not the issuer's), tokens
missing or refused (log in again), a site or DIN the account does not have. No token, code
or verifier is ever printed or logged.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powerwall_bus.shared.command import Command
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import CloudSettings, GatewaySettings, Sources, load

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from powerwall_bus.shared.tesla_cloud.client import EnergySite, TeslaCloud
    from powerwall_bus.shared.tesla_cloud.tokens import CloudTokens

ACTIONS = ("login", "refresh", "logout", "products", "jwks", "verify")
OWNER_CLIENT_ID = "ownerapi"


@dataclass(frozen=True)
class CloudToolConfig:
    """Everything ``pwbus cloud`` needs."""

    action: str
    cloud: CloudSettings
    state_dir: Path
    issuer: str
    audience: str
    authorize_url: str
    redirect_uri: str
    scope: str
    callback: str | None = None  # login: the pasted callback URL (None: read stdin)
    din: str = ""
    site_id: int | None = None
    keys: Path | None = None  # verify: a JWKS (JSON) or PEM file
    fetch_keys: bool = False  # verify: fetch the issuer's JWKS


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="login: the OAuth login (authorization code + PKCE) | refresh: new tokens now | "
        "logout: delete the tokens | products: the energy sites and gateways | jwks: the "
        "issuer's signing keys as PEM | verify: check the saved access token",
    )
    parser.add_argument(
        "--callback", metavar="URL", help="login: the callback URL (default: asked on stdin)"
    )
    parser.add_argument("--din", default="", help="products: pick the site of this gateway")
    parser.add_argument(
        "--site-id", dest="site_id", default="", help="products: pick this energy_site_id"
    )
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help="verify: check the signature with these keys (a JWKS JSON file or a PEM key)",
    )
    parser.add_argument(
        "--fetch-keys",
        action="store_true",
        help="verify: check the signature with the issuer's keys, fetched now",
    )
    parser.add_argument(
        "--issuer",
        default="",
        help="the token issuer (default: cloud.auth_url without /token, "
        "https://auth.tesla.com/oauth2/v3)",
    )
    parser.add_argument(
        "--audience", default="", help="the token audience (default: cloud.api_url + '/')"
    )
    parser.add_argument(
        "--authorize-url",
        default="",
        help="login: the authorize endpoint (default: <issuer>/authorize)",
    )
    parser.add_argument(
        "--redirect-uri",
        default="",
        help="login: the redirect URI registered for the client (default: tesla://auth/callback "
        "for ownerapi; a Fleet API application must give its own)",
    )
    parser.add_argument(
        "--scope", default="", help="login: the scopes, space-separated (default: per client)"
    )


def _load(sources: Sources, args: argparse.Namespace) -> CloudToolConfig:
    cloud = load(CloudSettings, "cloud", sources)
    state_dir = load(GatewaySettings, "gateway", sources).state_dir
    assert state_dir is not None
    site_id: int | None = None
    if args.site_id:
        try:
            site_id = int(args.site_id)
        except ValueError:
            raise ConfigError("cloud.site-id", "an energy_site_id is a whole number") from None
    if args.din and site_id is not None:
        raise ConfigError("cloud.products", "give --din or --site-id, not both")
    owner = cloud.client_id == OWNER_CLIENT_ID
    redirect_uri = args.redirect_uri or ("tesla://auth/callback" if owner else "")
    if args.action == "login" and not redirect_uri:
        raise ConfigError("cloud.redirect-uri", "a Fleet API application needs --redirect-uri")
    if args.keys and args.fetch_keys:
        raise ConfigError("cloud.verify", "give --keys FILE or --fetch-keys, not both")
    issuer = (args.issuer or cloud.auth_url.rstrip("/").removesuffix("/token")).rstrip("/")
    default_scope = (
        "openid email offline_access"
        if owner
        else ("openid offline_access energy_device_data energy_cmds")
    )
    return CloudToolConfig(
        action=args.action,
        cloud=cloud,
        state_dir=state_dir,
        issuer=issuer,
        audience=args.audience or cloud.api_url.rstrip("/") + "/",
        authorize_url=args.authorize_url or issuer + "/authorize",
        redirect_uri=redirect_uri,
        scope=args.scope or default_scope,
        callback=args.callback,
        din=args.din,
        site_id=site_id,
        keys=Path(args.keys) if args.keys else None,
        fetch_keys=args.fetch_keys,
    )


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _until(epoch: float, now: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC, in {(epoch - now) / 60:.0f} min"


# --------------------------------------------------------------------------- actions


def _checked(
    config: CloudToolConfig,
    tokens: CloudTokens,
    now: float,
    keys: dict[str, rsa.RSAPublicKey] | None = None,
) -> str:
    """One line on the access token's checks; raises CloudTokenInvalid when one fails."""
    from powerwall_bus.shared.tesla_cloud import jwt

    jwt.verify(tokens.access, issuer=config.issuer, audience=config.audience, now=now, keys=keys)
    signed = ", signature good" if keys is not None else ""
    return f"access token verified: issuer, audience, expiry{signed}"


def _login(config: CloudToolConfig, cloud: TeslaCloud) -> None:
    from powerwall_bus.shared.tesla_cloud import oauth

    login = oauth.start()
    url = oauth.authorize_url(
        config.authorize_url, config.cloud.client_id, config.redirect_uri, config.scope, login
    )
    _say("1. Open this URL in a browser and log in to your Tesla account:")
    _say(url)
    _say(f"2. The browser ends on a page that does not load ({config.redirect_uri}?...).")
    _say("   Copy that page's whole address and paste it here, then press Enter:")
    pasted = config.callback if config.callback is not None else sys.stdin.readline()
    code = oauth.read_callback(pasted, config.redirect_uri, login, config.issuer)
    now = time.time()
    audience = "" if config.cloud.client_id == OWNER_CLIENT_ID else config.audience.rstrip("/")
    tokens = oauth.exchange(
        cloud.transport,
        config.cloud.auth_url,
        config.cloud.client_id,
        config.redirect_uri,
        code,
        login,
        now,
        audience,
    )
    checked = _checked(config, tokens, now)  # tokens for another server are not saved
    cloud.store.save(tokens)
    _say(checked)
    _say(
        f"logged in: tokens saved to {cloud.store.path} (mode 0600); access token valid until "
        f"{_until(tokens.expires_at, now)}"
    )
    _say("next: pwbus cloud products")


def _pick(sites: list[EnergySite], config: CloudToolConfig) -> EnergySite | None:
    from powerwall_bus.shared.errors import CloudNotFound

    if config.din:
        found = [site for site in sites if site.din == config.din]
        if not found:
            raise CloudNotFound(f"the account has no gateway {config.din}")
        return found[0]
    wanted = config.site_id if config.site_id is not None else config.cloud.site_id
    if wanted is not None:
        for site in sites:
            if site.site_id == wanted:
                return site
        raise CloudNotFound(f"the account has no energy site {wanted} with a gateway")
    return sites[0] if len(sites) == 1 else None


def _products(config: CloudToolConfig, cloud: TeslaCloud) -> None:
    from powerwall_bus.shared.tesla_cloud.client import EnergySite

    answer: Any = cloud.products()
    entries = answer.get("response") if isinstance(answer, dict) else None
    sites = []
    for entry in entries if isinstance(entries, list) else []:
        site_id = entry.get("energy_site_id") if isinstance(entry, dict) else None
        din = entry.get("gateway_id") if isinstance(entry, dict) else None
        if isinstance(site_id, int) and not isinstance(site_id, bool) and isinstance(din, str):
            sites.append(EnergySite(site_id, din, str(entry.get("site_name") or "")))
    if not sites:
        _say("the account has no energy site with a gateway")
        return
    picked = _pick(sites, config)
    _say(f"{'':2}{'site id':<16} {'gateway DIN':<30} name")
    for site in sites:
        mark = "* " if site == picked else "  "
        _say(f"{mark}{site.site_id:<16} {site.din:<30} {site.name}")
    if picked is None:
        _say(f"{len(sites)} energy sites: pick one with --site-id ID or --din DIN")
        return
    _say(f"using site {picked.site_id} (gateway {picked.din})")
    if config.cloud.site_id != picked.site_id:
        _say(
            f"to make it the default: PWBUS_CLOUD_ENERGY_SITE_ID={picked.site_id}, or "
            f'energy_site_id = "{picked.site_id}" under [cloud] in the config file'
        )


def _fetch_keys(config: CloudToolConfig, cloud: TeslaCloud) -> dict[str, rsa.RSAPublicKey]:
    from powerwall_bus.shared.tesla_cloud import jwt

    url = config.issuer + "/discovery/keys"
    return jwt.keys_from_jwks(cloud.transport.call("GET", url, what="Tesla's key endpoint"))


def _file_keys(path: Path) -> dict[str, rsa.RSAPublicKey]:
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from powerwall_bus.shared.errors import CloudTokenInvalid
    from powerwall_bus.shared.tesla_cloud import jwt

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("cloud.keys", f"cannot read {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"{"):
        try:
            return jwt.keys_from_jwks(json.loads(data))
        except ValueError:
            raise ConfigError("cloud.keys", f"{path} is not JSON") from None
    keys: dict[str, rsa.RSAPublicKey] = {}
    for index, block in enumerate(data.split(b"-----END PUBLIC KEY-----")[:-1]):
        try:
            key = serialization.load_pem_public_key(block + b"-----END PUBLIC KEY-----\n")
        except ValueError:
            raise CloudTokenInvalid(f"key {index} in {path} is not a PEM public key") from None
        if isinstance(key, rsa.RSAPublicKey):
            keys[_kid_before(block) or f"key-{index}"] = key
    if not keys:
        raise ConfigError("cloud.keys", f"{path} holds no RSA public key")
    return keys


def _kid_before(block: bytes) -> str:
    """The ``kid: NAME`` line ``pwbus cloud jwks`` prints above each PEM, if any."""
    for line in block.decode("ascii", "replace").splitlines():
        if line.startswith("kid: "):
            return line[5:].strip()
    return ""


def _jwks(config: CloudToolConfig, cloud: TeslaCloud) -> None:
    from powerwall_bus.shared.tesla_cloud import jwt

    for kid, key in _fetch_keys(config, cloud).items():
        _say(f"kid: {kid}")
        sys.stdout.write(jwt.pem(key))


def _verify(config: CloudToolConfig, cloud: TeslaCloud) -> None:
    now = time.time()
    tokens = cloud.store.load(now)
    if not tokens.access:
        from powerwall_bus.shared.errors import CloudTokenInvalid

        raise CloudTokenInvalid("the token file holds no access token; run pwbus cloud refresh")
    keys = None
    if config.keys is not None:
        keys = _file_keys(config.keys)
    elif config.fetch_keys:
        keys = _fetch_keys(config, cloud)
    _say(_checked(config, tokens, now, keys))
    _say(f"valid until {_until(tokens.expires_at, now)}")


def run_cloud(config: CloudToolConfig) -> int:
    """Carry out one ``pwbus cloud`` action; the exit status (2: refused input)."""
    from powerwall_bus.shared.errors import CloudAuthError, CloudNotFound
    from powerwall_bus.shared.tesla_cloud.client import TeslaCloud

    cloud = TeslaCloud.from_settings(config.cloud, config.state_dir)
    try:
        if config.action == "login":
            _login(config, cloud)
        elif config.action == "refresh":
            now = time.time()
            tokens = cloud.refresh()
            _say(
                f"refreshed: new tokens saved to {cloud.store.path}; access token valid "
                f"until {_until(tokens.expires_at, now)}"
            )
            _say(_checked(config, tokens, now))
        elif config.action == "logout":
            if cloud.store.clear():
                _say(f"logged out: deleted {cloud.store.path}")
            else:
                _say(f"no tokens to delete ({cloud.store.path} does not exist)")
        elif config.action == "products":
            _products(config, cloud)
        elif config.action == "jwks":
            _jwks(config, cloud)
        else:
            _verify(config, cloud)
    except (CloudAuthError, CloudNotFound) as exc:
        if isinstance(exc, CloudNotFound) and exc.status is not None:
            raise  # Tesla's 404, not a site the user named
        sys.stderr.write(f"pwbus cloud: {exc}\n")
        return 2
    finally:
        cloud.close()
    return 0


CLOUD = Command(
    name="cloud",
    help="Tesla cloud: log in (OAuth + PKCE), refresh, log out, list energy sites, signing keys",
    add_arguments=_arguments,
    load=_load,
    run=run_cloud,
)
