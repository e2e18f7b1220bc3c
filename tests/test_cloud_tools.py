"""``pwbus cloud``: the OAuth login against the fake Tesla cloud over real sockets, and the
tools after it (refresh, logout, products, jwks, verify).

A test-side "browser" opens the authorize URL the command prints, is logged in at once by the
fake and stops at the redirect to ``tesla://auth/callback?...``, which it hands back as the
user would paste it. No token may appear in stdout, stderr or the logs; every refusal is one
line and exit status 2.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from powerwall_bus.cli import main
from powerwall_bus.shared.errors import CloudTokenInvalid
from powerwall_bus.shared.tesla_cloud import jwt, oauth
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE
from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner

DIN = "1232100-00-E--TG121832953V3E"
OTHER_DIN = "1232100-00-E--TG000000000777"


@pytest.fixture
def cloud() -> Iterator[FakeCloudRunner]:
    fake = FakeCloud(
        gateway_url="https://127.0.0.1:9",  # never contacted: no signed relay here
        din=DIN,
        sites=((2222222222222, OTHER_DIN, "Barn"),),
    )
    with FakeCloudRunner(fake) as runner:
        yield runner


@pytest.fixture
def env(cloud: FakeCloudRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "PWBUS_CLOUD_API_URL": cloud.url,
        "PWBUS_CLOUD_AUTH_URL": cloud.token_url,
        "PWBUS_STATE_DIR": str(tmp_path / "state"),
        "PWBUS_LOG_LEVEL": "DEBUG",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PWBUS_CLOUD_ENERGY_SITE_ID", raising=False)
    return values


def browser(authorize_url: str) -> str:
    """Follow the authorize URL to the fake; the callback URL it redirects to."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def _token_file(env: dict[str, str]) -> Path:
    return Path(env["PWBUS_STATE_DIR"]) / TOKEN_FILE


class PastingStdin:
    """stdin for an in-process login: reads the printed URL, runs the browser, 'pastes'."""

    def __init__(
        self, capsys: pytest.CaptureFixture[str], tamper: Callable[[str], str] = lambda u: u
    ) -> None:
        self.capsys = capsys
        self.tamper = tamper
        self.printed = ""
        self.authorize_url = ""

    def readline(self) -> str:
        self.printed = self.capsys.readouterr().out
        self.authorize_url = next(
            line for line in self.printed.splitlines() if line.startswith("http")
        )
        return self.tamper(browser(self.authorize_url)) + "\n"


def _login(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[str], str] = lambda u: u,
) -> tuple[int, PastingStdin, str, str]:
    stdin = PastingStdin(capsys, tamper)
    monkeypatch.setattr(sys, "stdin", stdin)
    status = main(["cloud", "login"])
    captured = capsys.readouterr()
    return status, stdin, captured.out, captured.err


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["cloud", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _refused(result: tuple[int, str, str], words: str) -> None:
    status, out, err = result
    assert status == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("pwbus cloud: ") and words in err, err


# --------------------------------------------------------------------------- login


def test_login_from_a_real_shell_saves_0600_tokens_and_shows_none(
    env: dict[str, str], cloud: FakeCloudRunner
) -> None:
    """The whole flow as a user runs it: a process, its stdout, the pasted URL on stdin."""
    process = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "cloud", "login"],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    url = ""
    while not url:
        line = process.stdout.readline()
        assert line, "the command ended before printing the authorize URL"
        url = line.strip() if line.startswith("http") else ""
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["response_type"] == ["code"] and query["client_id"] == ["ownerapi"]
    assert query["redirect_uri"] == ["tesla://auth/callback"] and len(query["state"][0]) >= 16
    out, err = process.communicate(browser(url) + "\n", timeout=30)
    assert process.returncode == 0, err
    path = _token_file(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["refresh"] in cloud.fake.refresh and saved["access"] in cloud.fake.access
    for secret in (saved["refresh"], saved["access"]):
        assert secret not in out and secret not in err  # err holds the DEBUG log too
    assert "access token verified: issuer, audience, expiry" in out
    assert f"tokens saved to {path} (mode 0600)" in out


def test_the_code_is_traded_with_the_verifier_of_the_printed_challenge(
    env: dict[str, str],
    cloud: FakeCloudRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    real_start = oauth.start

    def start() -> oauth.Login:
        login = real_start()
        seen.append(login.verifier)
        return login

    monkeypatch.setattr(oauth, "start", start)
    status, stdin, out, err = _login(monkeypatch, capsys)
    assert status == 0, err
    challenge = parse_qs(urlsplit(stdin.authorize_url).query)["code_challenge"][0]
    assert challenge == oauth.code_challenge(seen[0])
    assert cloud.fake.codes == {}  # the code was used, once
    saved = json.loads(_token_file(env).read_text())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (saved["refresh"], saved["access"], seen[0]):
        assert secret not in out + err + logged


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (lambda u: _with(u, state="not-this-login"), "state is not this login's"),
        (lambda u: _with(u, issuer="https://evil.example/oauth2/v3"), "another issuer"),
        (lambda u: _with(u, iss="https://evil.example/oauth2/v3"), "another issuer"),
        (lambda u: u.replace("tesla://auth/callback", "https://example.invalid/cb"), "not the"),
        (lambda u: "", "not the callback URL"),
        (lambda u: _with(u, error="access_denied"), "Tesla refused the login (access_denied)"),
    ],
)
def test_a_callback_that_is_not_this_logins_is_refused_and_nothing_saved(
    env: dict[str, str],
    cloud: FakeCloudRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[str], str],
    words: str,
) -> None:
    status, _stdin, out, err = _login(monkeypatch, capsys, tamper)
    _refused((status, out, err), words)
    assert not _token_file(env).exists()
    assert len(cloud.fake.codes) == 1  # the code was never presented


def test_a_code_used_twice_is_refused(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    used: list[str] = []

    def once(url: str) -> str:
        used.append(url)
        return url

    assert _login(monkeypatch, capsys, once)[0] == 0
    _token_file(env).unlink()
    again = PastingStdin(capsys)
    again.readline = lambda: used[0] + "\n"  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", again)
    # A new login has a new state: the old URL is refused before its code is even tried.
    _refused(_run(capsys, "login"), "state is not this login's")


# --------------------------------------------------------------------------- after the login


@pytest.fixture
def logged_in(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, str]:
    assert _login(monkeypatch, capsys)[0] == 0
    return env


def test_refresh_replaces_both_tokens_and_the_old_refresh_token_is_spent(
    logged_in: dict[str, str], cloud: FakeCloudRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _token_file(logged_in)
    before = json.loads(path.read_text())
    status, out, err = _run(capsys, "refresh")
    assert status == 0, err
    after = json.loads(path.read_text())
    assert after["refresh"] != before["refresh"] and after["access"] != before["access"]
    assert before["refresh"] not in cloud.fake.refresh and after["refresh"] in cloud.fake.refresh
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "access token verified" in out
    assert all(
        t not in out + err for t in (*before.values(), *after.values()) if isinstance(t, str)
    )


def test_logout_deletes_the_tokens_and_says_so_then_the_tools_ask_for_a_login(
    logged_in: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _token_file(logged_in)
    assert _run(capsys, "logout") == (0, f"logged out: deleted {path}\n", "")
    assert not path.exists()
    assert _run(capsys, "logout")[1] == f"no tokens to delete ({path} does not exist)\n"
    _refused(_run(capsys, "products"), "log in first")
    _refused(_run(capsys, "refresh"), "log in first")


def test_products_lists_every_site_and_asks_to_pick_one_of_several(
    logged_in: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(capsys, "products")
    assert status == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["1234567890123", DIN, "Home"] for line in lines)
    assert any(line.split()[:3] == ["2222222222222", OTHER_DIN, "Barn"] for line in lines)
    assert lines[-1] == "2 energy sites: pick one with --site-id ID or --din DIN"


@pytest.mark.parametrize(
    "argv", [["--site-id", "2222222222222"], ["--din", OTHER_DIN]], ids=["site-id", "din"]
)
def test_products_picks_a_site_and_says_how_to_make_it_the_default(
    logged_in: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, _ = _run(capsys, "products", *argv)
    assert status == 0
    assert f"* 2222222222222    {OTHER_DIN}" in out
    assert "using site 2222222222222 (gateway 1232100-00-E--TG000000000777)" in out
    assert "PWBUS_CLOUD_ENERGY_SITE_ID=2222222222222" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--site-id", "999"], "no energy site 999"),
        (["--din", "1232100-00-E--TGNOSUCHONE"], "no gateway 1232100-00-E--TGNOSUCHONE"),
        (["--site-id", "abc"], "whole number"),
    ],
)
def test_a_site_the_account_does_not_have_is_refused(
    logged_in: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    _refused(_run(capsys, "products", *argv), words)


def test_jwks_prints_the_issuers_keys_as_pem_and_verify_uses_them(
    logged_in: dict[str, str],
    cloud: FakeCloudRunner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    status, out, _ = _run(capsys, "jwks")
    assert status == 0
    assert out.splitlines()[0] == "kid: fake-cloud-1"
    assert jwt.pem(cloud.fake.jwt_key.public_key()) in out
    keys = tmp_path / "keys.pem"
    keys.write_text(out)
    status, out, _ = _run(capsys, "verify", "--keys", str(keys))
    assert status == 0 and "issuer, audience, expiry, signature good" in out
    status, out, _ = _run(capsys, "verify", "--fetch-keys")
    assert status == 0 and "signature good" in out


def test_a_signature_not_the_issuers_is_refused(
    logged_in: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    keys = tmp_path / "other.pem"
    keys.write_text("kid: fake-cloud-1\n" + jwt.pem(other))
    _refused(_run(capsys, "verify", "--keys", str(keys)), "signature is not the issuer's")


def _save_access(env: dict[str, str], access: str) -> None:
    record = {"access": access, "refresh": "unused-refresh", "expires_at": time.time() + 60}
    path = _token_file(env)
    path.write_text(json.dumps(record))
    path.chmod(0o600)


def test_an_expired_token_or_one_for_someone_else_is_refused(
    logged_in: dict[str, str], cloud: FakeCloudRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    base = cloud.url
    claims = {"iss": f"{base}/oauth2/v3", "aud": [f"{base}/"], "exp": int(time.time()) - 3600}
    _save_access(logged_in, cloud.fake.mint_jwt(claims))
    _refused(_run(capsys, "verify", "--fetch-keys"), "expired 60 min ago")
    claims["exp"] = int(time.time()) + 3600
    _save_access(logged_in, cloud.fake.mint_jwt({**claims, "aud": "https://someone.else/"}))
    _refused(_run(capsys, "verify"), f"not for '{base}/'")
    _save_access(logged_in, cloud.fake.mint_jwt({**claims, "iss": "https://auth.other/"}))
    _refused(_run(capsys, "verify"), "issuer is 'https://auth.other/'")
    _save_access(logged_in, "opaque-token")
    _refused(_run(capsys, "verify"), "not a JWT")


# --------------------------------------------------------------------------- the pure parts


def test_code_challenge_is_rfc_7636s_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oauth.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_a_token_signed_with_none_or_hmac_is_refused_whatever_it_claims() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": "https://i", "aud": "https://a/", "exp": time.time() + 60}
    for alg in ("none", "HS256"):
        token = f"{part({'alg': alg, 'kid': 'k'})}.{part(claims)}.c2ln"
        with pytest.raises(CloudTokenInvalid, match=f"signed with '{alg}', not RS256"):
            jwt.verify(
                token, issuer="https://i", audience="https://a/", now=time.time(), keys={"k": key}
            )
