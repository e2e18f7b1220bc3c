"""``pwbus pair`` over real sockets: register through the fake cloud, the switch toggle, the
list, the LAN-signed list and add, removal through the cloud, and the command line.

The LAN road here is :class:`~tests.support.fake_cloud.DirectChannel` (a test helper that
posts to the simulator's ``/tedapi/v1r``, as the poller's relay does on a real bus): any
:class:`SignedChannel` does for :mod:`consumers.dispatch.pair`.
"""

from __future__ import annotations

import io
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from powerwall_bus.cli import main
from powerwall_bus.consumers.dispatch import pair
from powerwall_bus.consumers.dispatch.cloud import CloudChannel
from powerwall_bus.shared.errors import PairingFailed, TedapiFault
from powerwall_bus.shared.tedapi import keys
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE
from tests.support.fake_cloud import CloudSite, DirectChannel, cloud_site
from tests.support.tedapi_keys import signing_key


@pytest.fixture(scope="module")
def module_site() -> Iterator[CloudSite]:
    with cloud_site() as site:
        yield site


@pytest.fixture
def site(module_site: CloudSite) -> Iterator[CloudSite]:
    module_site.reset()
    yield module_site
    module_site.reset()


def _fingerprint(name: str) -> str:
    return keys.fingerprint(keys.public_der(signing_key(name)))


def test_register_toggle_verify_list_lan_list_add_and_remove(
    site: CloudSite, tmp_path: Path
) -> None:
    cloud = site.client(tmp_path)
    said: list[str] = []
    polls: list[str] = []

    def sleep(_seconds: float) -> None:  # the user toggles the switch after two polls
        polls.append("poll")
        if len(polls) == 2:
            site.control("toggle", {})

    mine = pair.register(
        cloud,
        signing_key("home"),
        "pwbus test",
        timeout=60,
        poll=0.01,
        say=said.append,
        sleep=sleep,
    )
    assert mine.verified and mine.fingerprint == _fingerprint("home")
    assert "switch it OFF and back ON" in said[0] and f"Key {_fingerprint('home')[:16]}" in said[0]
    assert said[1:] == [
        f"key {_fingerprint('home')[:16]}: PENDING_VERIFICATION",
        f"key {_fingerprint('home')[:16]}: VERIFIED",
    ]
    listed = pair.list_keys(cloud)
    assert [(c.fingerprint, c.state_name, c.description) for c in listed] == [
        (_fingerprint("home"), "VERIFIED", "pwbus test")
    ]
    # the verified key signs over the LAN: the gateway lists it, and takes a second key
    lan = DirectChannel(site.gateway.url)
    answer = pair.signed_list(lan, signing_key("home"), site.din, now=time.time())
    assert [c.fingerprint for c in answer.clients] == [_fingerprint("home")]
    added = pair.add_lan_key(
        lan,
        signing_key("home"),
        site.din,
        keys.public_der(signing_key("laptop")),
        "laptop",
        now=time.time(),
    )
    assert added.verified and added.fingerprint == _fingerprint("laptop")
    both = pair.signed_list(lan, signing_key("laptop"), site.din, now=time.time())
    assert {c.fingerprint for c in both.clients} == {_fingerprint("home"), _fingerprint("laptop")}
    # removed through the cloud (grpc_signed_command), signed by the first key
    relay = CloudChannel(cloud, via="command")
    target = pair.find_key(pair.list_keys(cloud), _fingerprint("laptop")[:12]).public_key
    pair.remove_key(relay, signing_key("home"), relay.din, target, now=time.time())
    assert [c.fingerprint for c in pair.list_keys(cloud)] == [_fingerprint("home")]
    with pytest.raises(TedapiFault, match="UNKNOWN_KEY_ID"):
        pair.signed_list(lan, signing_key("laptop"), site.din, now=time.time())


def test_register_again_when_already_verified_sends_nothing_new(
    site: CloudSite, tmp_path: Path
) -> None:
    cloud = site.client(tmp_path)
    pair.register(
        cloud,
        signing_key("home"),
        "x",
        timeout=5,
        poll=0.01,
        say=lambda _: None,
        sleep=lambda _: site.control("toggle", {}),
    )
    said: list[str] = []
    pair.register(cloud, signing_key("home"), "x", timeout=5, poll=0.01, say=said.append)
    assert said == [
        f"key {_fingerprint('home')[:16]} is already paired (VERIFIED) with gateway {site.din}"
    ]


def test_no_toggle_times_out(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    moments = iter([0.0, 1.0, 2.0, 3.0, 100.0])
    with pytest.raises(PairingFailed, match=r"not verified within 10 s \(no switch toggle"):
        pair.register(
            cloud,
            signing_key("home"),
            "x",
            timeout=10,
            poll=1,
            say=lambda _: None,
            clock=lambda: next(moments),
            sleep=lambda _: None,
        )


def test_a_closed_window_is_told_and_a_late_toggle_does_not_verify(
    site: CloudSite, tmp_path: Path
) -> None:
    site.fake.pair_window = 0.0
    cloud = site.client(tmp_path)
    with pytest.raises(PairingFailed, match="window closed"):
        pair.register(
            cloud,
            signing_key("home"),
            "x",
            timeout=30,
            poll=0.01,
            say=lambda _: None,
            sleep=lambda _: time.sleep(0.01),
        )
    assert site.control("toggle", {}) == {"verified": []}
    assert [c.state_name for c in pair.list_keys(cloud)] == ["PENDING_VERIFICATION_TIMEOUT"]


def test_find_key_needs_enough_digits_and_one_match(site: CloudSite, tmp_path: Path) -> None:
    with pytest.raises(PairingFailed, match="at least 8 hex digits"):
        pair.find_key([], "abc")
    with pytest.raises(PairingFailed, match="no paired key"):
        pair.find_key([], "0123456789")


# --------------------------------------------------------------------------- the command line


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def test_pwbus_pair_end_to_end_shows_fingerprints_only(
    site: CloudSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("PWBUS_STATE_DIR", str(state))
    monkeypatch.setenv("PWBUS_CLOUD_API_URL", site.cloud.url)
    monkeypatch.setenv("PWBUS_CLOUD_AUTH_URL", site.cloud.token_url)
    monkeypatch.setenv("PWBUS_CLOUD_PAIR_POLL", "0.1")
    status, out, err = _run(["pair", "init"])
    assert status == 0 and err == ""
    key_file = state / "tedapi_rsa_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    own = keys.load_private_key(key_file)
    print_ = keys.fingerprint(keys.public_der(own))
    assert f"fingerprint {print_}" in out
    status, _, err = _run(["pair", "init"])  # never replaces a key
    assert status == 1 and err.count("\n") == 1 and "already exists" in err
    site.client(state)  # the tokens a login left in the state folder
    monkeypatch.setenv("PWBUS_CLOUD_PAIR_TIMEOUT", "30")

    def toggle_once_registered() -> None:  # the user at the Powerwall, after the prompt
        deadline = time.monotonic() + 30
        while not site.fake.registered and time.monotonic() < deadline:
            time.sleep(0.05)
        site.control("toggle", {})

    toggler = threading.Thread(target=toggle_once_registered)
    toggler.start()
    status, out, err = _run(["pair", "register", "--description", "cli test"])
    toggler.join()
    assert status == 0, err
    assert "switch it OFF and back ON" in out and f"paired: {print_} VERIFIED" in out
    pem = state / "second.pem"
    pem.write_text(keys.public_pem(signing_key("laptop")))
    status, out, err = _run(["pair", "add-lan", str(pem), "--description", "laptop"])
    assert status == 0, err
    assert f"added: {_fingerprint('laptop')} VERIFIED" in out
    status, out, _ = _run(["pair", "list"])
    assert status == 0
    assert f"{print_}  VERIFIED" in out and "(this key)" in out and _fingerprint("laptop") in out
    status, out, err = _run(["pair", "remove", "--key", str(pem)])
    assert status == 0, err
    assert out == f"removed {_fingerprint('laptop')}\n"
    status, out, _ = _run(["pair", "list"])
    assert _fingerprint("laptop") not in out
    status, _, err = _run(["pair", "remove", "deadbeef00"])
    assert status == 1
    assert err.endswith("\npwbus pair: no paired key has a fingerprint starting deadbeef00\n")
    # nothing secret anywhere: no token, no key material
    tokens = (state / TOKEN_FILE).read_text()
    import json

    saved = json.loads(tokens)
    secrets = [
        saved["access"],
        saved["refresh"],
        keys.public_b64(own),
        key_file.read_text()[40:120],
    ]
    everything = out + err + caplog.text
    for secret in secrets:
        assert secret not in everything
    assert site.control("counts")["refreshes"] == 0  # the saved access token was still good


def test_pwbus_pair_without_tokens_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PWBUS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PWBUS_CLOUD_API_URL", "http://127.0.0.1:9")
    keys.write_private_key(signing_key("home"), tmp_path)
    status, out, err = _run(["pair", "list"])
    assert status == 1 and out == ""
    assert err == (
        f"pwbus pair: no Tesla cloud tokens in {tmp_path / TOKEN_FILE}; log in first "
        "(a refresh token is enough)\n"
    )
    status, _, err = _run(["pair", "remove"])
    assert status == 2 and "give the fingerprint or --key FILE" in err
