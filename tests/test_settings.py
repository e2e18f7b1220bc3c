"""Settings: precedence, compatibility names, URL parts, and one-line errors without secrets."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    LogSettings,
    MysqlSettings,
    PollerSettings,
    SimulatorSettings,
    Sources,
    describe,
    load,
    option_table,
    secret_values,
)
from powerwall_bus.shared.settings.sections import SECTIONS


def _load(cls, section, *, flags=None, env=None, config=None):
    return load(cls, section, Sources.gather(flags=flags, env=env or {}, config_file=config))


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "pwbus.toml"
    config.write_text('[gateway]\nhost = "10.0.0.1"\nread_timeout = 3\nemail = "a@b.c"\n')
    env = {"PW_HOST": "10.0.0.2", "PW_TIMEOUT": "7"}
    settings = _load(
        GatewaySettings, "gateway", flags={"gateway.host": "10.0.0.3"}, env=env, config=config
    )
    assert settings.host == "10.0.0.3"  # flag
    assert settings.read_timeout == 7.0  # environment over file
    assert settings.email == "a@b.c"  # file


def test_pypowerwall_environment_names() -> None:
    env = {
        "PW_HOST": "192.168.1.20:8443",
        "PW_PASSWORD": "ABCDE",
        "PW_EMAIL": "me@example.com",
        "PW_TIMEZONE": "Europe/London",
        "PW_TIMEOUT": "4",
        "PW_AUTH_MODE": "token",
        "PW_AUTH_PATH": "/tmp/pwbus-auth",
    }
    settings = _load(GatewaySettings, "gateway", env=env)
    assert (settings.host, settings.port) == ("192.168.1.20", 8443)
    assert settings.password == "ABCDE"
    assert settings.email == "me@example.com"
    assert settings.timezone == "Europe/London"
    assert settings.read_timeout == 4.0
    assert settings.auth_mode == "token"
    assert settings.session_file == Path("/tmp/pwbus-auth/gateway-session.json")
    assert settings.base_url == "https://192.168.1.20:8443"
    log = _load(LogSettings, "log", env={"PW_DEBUG": "yes"})
    assert log.level == "DEBUG"


def test_own_names_win_over_pypowerwall_names() -> None:
    env = {"PW_HOST": "10.0.0.2", "PWBUS_GATEWAY_HOST": "10.0.0.9"}
    assert _load(GatewaySettings, "gateway", env=env).host == "10.0.0.9"


@pytest.mark.parametrize("name", ["credentials.json", "my-powerwall.creds", "credentials"])
def test_tesla_api_credentials_json(tmp_path: Path, name: str) -> None:
    """Recognised by its content, whatever the file is called (even with a BOM)."""
    credentials = tmp_path / name
    credentials.write_text(
        "\ufeff\n  "
        + json.dumps(
            {
                "gateway": {"host": "https://192.168.0.100", "password": "P4ssW0rd123", "din": "x"},
                "amqp": {"host": "broker.lan", "username": "tesla", "password": "s3cret"},
                "octopus_energy": {"account_number": "A-D1234A1A"},
            }
        )
    )
    gateway = _load(GatewaySettings, "gateway", config=credentials)
    amqp = _load(AmqpSettings, "amqp", config=credentials)
    assert (gateway.host, gateway.port, gateway.password) == ("192.168.0.100", 443, "P4ssW0rd123")
    assert (amqp.host, amqp.username, amqp.password) == ("broker.lan", "tesla", "s3cret")
    assert amqp.url == "amqp://tesla:s3cret@broker.lan:5672/%2F"


def test_amqp_url_parts_override_the_url() -> None:
    env = {"AMQP_URL": "amqp://u:p%40ss@rabbit:5673/home", "AMQP_PORT": "5999"}
    amqp = _load(AmqpSettings, "amqp", env=env)
    assert (amqp.host, amqp.port, amqp.username, amqp.password, amqp.vhost) == (
        "rabbit",
        5999,
        "u",
        "p@ss",
        "home",
    )
    assert amqp.url == "amqp://u:p%40ss@rabbit:5999/home"
    assert "p@ss" not in amqp.safe_url and "p%40ss" not in amqp.safe_url
    assert amqp.exchange == "Tesla"


def test_mysql_url_and_parts() -> None:
    env = {"MYSQL_URL": "mysql://writer:pw@db:3307/history", "MYSQL_DATABASE": "other"}
    mysql = _load(MysqlSettings, "mysql", env=env)
    assert (mysql.host, mysql.port, mysql.user, mysql.password, mysql.database) == (
        "db",
        3307,
        "writer",
        "pw",
        "other",
    )
    assert mysql.safe_url == "mysql://writer@db:3307/other"


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"PW_TIMEOUT": "soon"}, "gateway.read_timeout", "expected a number"),
        ({"PW_TIMEOUT": "-1"}, "gateway.read_timeout", "must be between 0.1 and 600 seconds"),
        ({"PW_AUTH_MODE": "magic"}, "gateway.auth_mode", "must be one of cookie, token"),
        ({"PW_HOST": "host:99999"}, "gateway.host", "invalid port"),
        ({"PWBUS_GATEWAY_TLS_FINGERPRINT": "abc"}, "gateway.tls_fingerprint", "SHA-256"),
    ],
)
def test_bad_values_name_the_key(env: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(GatewaySettings, "gateway", env=env)
    message = str(caught.value)
    assert message.startswith(f"configuration: {key}:")
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"PW_TIMEOUT": "Hunter2-pasted"}, "gateway.read_timeout"),  # conversion fails
        ({"PWBUS_GATEWAY_PORT": "Hunter2-pasted"}, "gateway.port"),
        ({"PW_AUTH_MODE": "Hunter2-pasted"}, "gateway.auth_mode"),  # the check fails
        ({"PW_HOST": "host:Hunter2-pasted"}, "gateway.host"),
        ({"PWBUS_GATEWAY_TLS_FINGERPRINT": "Hunter2-pasted"}, "gateway.tls_fingerprint"),
    ],
)
def test_no_bad_value_is_ever_echoed(env: dict, key: str) -> None:
    """A password pasted into the wrong variable must not be printed back, whatever the key."""
    with pytest.raises(ConfigError) as caught:
        _load(GatewaySettings, "gateway", env=env)
    assert caught.value.key == key
    assert "Hunter2" not in str(caught.value)
    assert "environment" in str(caught.value) or key in ("gateway.host", "gateway.tls_fingerprint")


def test_slow_endpoints_error_does_not_echo_the_entry() -> None:
    env = {"PWBUS_POLL_SLOW_ENDPOINTS": "/api/status,Hunter2-pasted"}
    with pytest.raises(ConfigError, match="entry 2 is not an /api/ path") as caught:
        _load(PollerSettings, "poller", env=env)
    assert "Hunter2" not in str(caught.value)


def _numeric_fields() -> list[tuple[str, dataclasses.Field]]:
    found = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = typing.get_args(hint) or (hint,)
            if any(a in (int, float) for a in args):
                found.append((f"{section}.{f.name}", f))
    return found


NUMERIC_FIELDS = _numeric_fields()


def _load_one(key: str, raw: str) -> object:
    section, name = key.split(".")
    return getattr(load(SECTIONS[section], section, Sources(flags={key: raw})), name)


@pytest.mark.parametrize(("key", "field"), NUMERIC_FIELDS, ids=[k for k, _ in NUMERIC_FIELDS])
def test_every_numeric_setting_is_bounded(key: str, field: dataclasses.Field) -> None:
    """A huge value and a tiny one are refused with one line; the default passes."""
    assert field.metadata.get("check") is not None, f"{key} has no bounds"
    for raw in ("1000000000000", "-1"):
        with pytest.raises(ConfigError) as caught:
            _load_one(key, raw)
        assert caught.value.key == key, raw
        assert raw not in str(caught.value) and "\n" not in str(caught.value)
    if field.default is not None:
        assert _load_one(key, str(field.default)) == field.default


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("poller.buffer_seconds", "1e12"),
        ("poller.status_interval", "0.001"),
        ("poller.meters_interval", "0.5"),
        ("gateway.read_timeout", "0"),
        ("simulator.port", "70000"),
        ("writer.prefetch", "0"),
    ],
)
def test_examples_out_of_bounds(key: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=r"must be|TCP port"):
        _load_one(key, raw)


def test_bad_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        _load(AmqpSettings, "amqp", env={"AMQP_URL": "http://u:hunter22@x/"})
    assert "hunter22" not in str(caught.value)
    assert "amqp.url" in str(caught.value)


def test_missing_required_values() -> None:
    settings = _load(GatewaySettings, "gateway", env={"PW_HOST": "10.0.0.2"})
    with pytest.raises(ConfigError, match=r"gateway\.password: is required"):
        settings.require_login()


def test_unknown_key_in_toml_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "pwbus.toml"
    config.write_text('[gateway]\nhots = "10.0.0.1"\n')
    with pytest.raises(ConfigError, match=r"gateway\.hots: unknown key"):
        Sources.gather(env={}, config_file=config)


def test_unreadable_and_invalid_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Sources.gather(env={}, config_file=tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="is not valid"):
        Sources.gather(env={}, config_file=broken)


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "pwbus.toml"
    config.write_text('[simulator]\nport = 9443\nfaults = ["stopped", "latency=0.1"]\n')
    settings = _load(SimulatorSettings, "simulator", env={"PWBUS_CONFIG": str(config)})
    assert settings.port == 9443
    assert settings.faults == ("stopped", "latency=0.1")


def test_secrets_are_masked_in_repr_and_describe() -> None:
    gateway = GatewaySettings(host="h", password="TopSecret1")
    amqp = AmqpSettings(url="amqp://u:BrokerPass@h/%2F")
    assert "TopSecret1" not in repr(gateway)
    lines = describe({"gateway": gateway, "amqp": amqp})
    assert "gateway.password = ***" in lines
    assert not any("BrokerPass" in line or "TopSecret1" in line for line in lines)
    assert {"TopSecret1", "BrokerPass"} <= set(secret_values(gateway, amqp))


def test_every_option_has_help_and_a_unique_environment_name() -> None:
    seen: dict[str, str] = {}
    for key, env_names, help_text in option_table():
        assert help_text, key
        for name in env_names:
            # PW_PASSWORD is shared on purpose: the simulator accepts what the poller sends.
            if name in seen and name != "PW_PASSWORD":
                pytest.fail(f"{name} is used by {seen[name]} and {key}")
            seen[name] = key


def test_named_gateway_tables_are_checked_like_the_gateway_section(tmp_path: Path) -> None:
    config = tmp_path / "pwbus.toml"
    config.write_text('[gateways.home]\nhost = "10.0.0.2"\n[gateways.garage]\nhots = "x"\n')
    with pytest.raises(ConfigError) as typo:
        Sources.gather(env={}, config_file=config)
    assert typo.value.key == "gateways.garage.hots"
    config.write_text('[gateways."my home"]\nhost = "10.0.0.2"\n')
    with pytest.raises(ConfigError, match="letters, digits"):
        Sources.gather(env={}, config_file=config)
    config.write_text('[gateway]\nhost = "10.0.0.1"\n[gateways.home]\nhost = "10.0.0.2"\n')
    sources = Sources.gather(env={}, config_file=config)
    with pytest.raises(ConfigError, match=r"no \[gateways.away\] table .*known: home"):
        sources.for_gateway("away")
    flagged = Sources.gather(flags={"gateway.host": "10.0.0.3"}, env={}, config_file=config)
    assert load(GatewaySettings, "gateway", flagged.for_gateway("home")).host == "10.0.0.3"
    assert load(GatewaySettings, "gateway", sources).host == "10.0.0.1"


def test_every_setting_with_a_list_of_values_names_them_all_in_its_help() -> None:
    import re

    from powerwall_bus.shared.settings import SECTIONS

    checked = 0
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            choices = getattr(field.metadata.get("check"), "choices", ())
            for choice in choices:
                pattern = rf"(?<![\w-]){re.escape(choice)}(?![\w-])"
                assert re.search(pattern, field.metadata["help"]), (section, field.name, choice)
            checked += bool(choices)
    assert checked >= 5  # proxy.style, log.level, gateway.auth_mode, proxy.https, ...
