"""compose.yaml, the Dockerfile and configuration/ checked against the code (no Docker here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from powerwall_bus import broker_users
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    Sources,
    example_config,
    load,
    option_table,
)

ROOT = Path(__file__).resolve().parents[1]
KNOWN_ENV = {name for _, names, _ in option_table() for name in names}
IMAGE_ENV = re.compile(r"^(RABBITMQ_|MARIADB_)")
#: One-shot services: they run once and exit, so they have no healthcheck and no restart.
ONE_SHOT = {"broker-users"}


BROKER_PASSWORD_ENV = {broker_users.password_env(role) for role in broker_users.ROLES}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_services_images_and_healthchecks() -> None:
    services = _compose()["services"]
    assert {"rabbitmq", "mariadb", "simulator"} <= set(services)
    assert (
        services["rabbitmq"]["image"].startswith("rabbitmq:")
        and "management" in services["rabbitmq"]["image"]
    )
    assert services["mariadb"]["image"].startswith("mariadb:")
    assert services["simulator"]["build"] == "."
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and "healthcheck" not in service, name
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_compose_ports() -> None:
    services = _compose()["services"]
    assert "5672:5672" in services["rabbitmq"]["ports"]
    assert "15672:15672" in services["rabbitmq"]["ports"]
    assert "3306:3306" in services["mariadb"]["ports"]
    assert "8443:8443" in services["simulator"]["ports"]
    assert services["simulator"]["command"][:1] == ["simulate"]
    assert "8443" in services["simulator"]["command"]


def test_compose_environment_uses_real_setting_names() -> None:
    for name, service in _compose()["services"].items():
        for key in service.get("environment", {}):
            assert key in KNOWN_ENV or key in BROKER_PASSWORD_ENV or IMAGE_ENV.match(key), (
                f"{name}: unknown variable {key}"
            )


def test_compose_simulator_password_reaches_the_simulator() -> None:
    env = _compose()["services"]["simulator"]["environment"]
    assert "PW_PASSWORD" in env
    from powerwall_bus.shared.settings import SimulatorSettings

    sim = load(SimulatorSettings, "simulator", Sources.gather(env={"PW_PASSWORD": "xyzzy-1"}))
    assert sim.password == "xyzzy-1"


def test_dockerfile_installs_every_package_and_uses_pwbus() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("pwbus", "shared", "producers", "consumers", "simulator", "schema"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["pwbus"]' in dockerfile
    assert "USER pwbus" in dockerfile


def test_example_config_is_current_and_loads(tmp_path: Path) -> None:
    shipped = (ROOT / "configuration" / "pwbus.toml.example").read_text()
    assert shipped == example_config(), (
        "run: pwbus config --example > configuration/pwbus.toml.example"
    )
    uncommented = "\n".join(
        line[2:] if re.match(r"^# ([a-z_]+ = |\[gateways\.)", line) else line
        for line in shipped.splitlines()
    )
    config = tmp_path / "pwbus.toml"
    config.write_text(uncommented)
    sources = Sources.gather(env={"PW_HOST": "10.0.0.9"}, config_file=config)
    gateway = load(GatewaySettings, "gateway", sources)
    assert (gateway.host, gateway.port) == ("10.0.0.9", 443)
    assert sources.gateway_names() == ["home", "garage"]
    garage = load(GatewaySettings, "gateway", sources.for_gateway("garage"))
    assert (garage.name, garage.host) == ("garage", "192.168.1.21")  # the table beats PW_HOST
    assert garage.session_file.name == "gateway-session-garage.json"


def test_credentials_example_is_tesla_api_layout(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    credentials.write_text((ROOT / "configuration" / "credentials.json.example").read_text())
    sources = Sources.gather(env={}, config_file=credentials)
    gateway = load(GatewaySettings, "gateway", sources)
    amqp = load(AmqpSettings, "amqp", sources)
    assert (gateway.host, gateway.port) == ("192.168.0.100", 443)
    assert gateway.password == json.loads(credentials.read_text())["gateway"]["password"]
    assert (amqp.host, amqp.username) == ("localhost", "guest")


def test_env_example_names_are_known() -> None:
    for line in (ROOT / "configuration" / "pwbus.env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        match = re.match(r"^([A-Z][A-Z0-9_]+)=", line)
        if match:
            assert match.group(1) in KNOWN_ENV, match.group(1)


# --------------------------------------------------------------------------- the poller

_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}`` / ``${NAME:-default}`` (default when unset or empty)."""
    return _INTERPOLATION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def _service_env(service: str, dotenv: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as the container sees it, given the .env file's values."""
    raw = _compose()["services"][service]["environment"]
    return {key: _interpolate(str(value), dotenv or {}) for key, value in raw.items()}


def test_compose_poller_service() -> None:
    compose = _compose()
    poller = compose["services"]["poller"]
    assert poller["command"] == ["poller"]
    assert poller["build"] == "." and poller["image"] == compose["services"]["simulator"]["image"]
    assert poller["restart"] == "unless-stopped"
    assert poller["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    assert poller["depends_on"]["simulator"] == {
        "condition": "service_healthy",
        "required": False,
    }
    assert "poller-state:/var/lib/pwbus" in poller["volumes"]
    assert "poller-state" in compose["volumes"]
    assert poller["environment"]["PWBUS_STATE_DIR"] == "/var/lib/pwbus"
    assert {"PW_HOST", "PW_PASSWORD", "AMQP_URL"} <= set(poller["environment"])
    assert "ports" not in poller  # it listens on nothing


def test_compose_poller_settings_reach_simulator_and_broker() -> None:
    from powerwall_bus.shared.settings import SimulatorSettings

    env = _service_env("poller")
    sources = Sources.gather(env=env)
    gateway = load(GatewaySettings, "gateway", sources)
    amqp = load(AmqpSettings, "amqp", sources)
    simulator = load(SimulatorSettings, "simulator", Sources.gather(env=_service_env("simulator")))
    assert (gateway.host, gateway.port) == ("simulator", 8443)
    assert "8443" in _compose()["services"]["simulator"]["command"]
    assert gateway.password == simulator.password
    assert (amqp.host, amqp.port, amqp.vhost) == ("rabbitmq", 5672, "/")
    assert _broker_role(amqp) == "poller"
    assert gateway.state_dir == Path("/var/lib/pwbus")

    # A .env for the real gateway and other broker credentials reaches both services alike.
    dotenv = {
        "PW_HOST": "192.168.1.20",
        "PW_PASSWORD": "ABCDE",
        "PWBUS_BROKER_POLLER_PASSWORD": "p@ss/w",
    }
    sources = Sources.gather(env=_service_env("poller", dotenv))
    gateway = load(GatewaySettings, "gateway", sources)
    amqp = load(AmqpSettings, "amqp", sources)
    assert (gateway.host, gateway.port, gateway.password) == ("192.168.1.20", 443, "ABCDE")
    assert amqp.password == "p@ss/w"
    assert _broker_role(amqp, dotenv) == "poller"


def test_compose_poller_healthcheck_means_logged_in(tmp_path: Path) -> None:
    import subprocess

    from powerwall_bus.shared.gateway.session_store import SavedSession, SessionStore

    poller = _compose()["services"]["poller"]
    kind, command = poller["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    gateway = load(GatewaySettings, "gateway", Sources.gather(env=_service_env("poller")))
    assert str(gateway.session_file) in command  # where the poller really saves it

    session_file = tmp_path / "gateway-session.json"
    local = command.replace(str(gateway.session_file), str(session_file))

    def healthy() -> bool:
        return subprocess.run(["sh", "-c", local], check=False, timeout=10).returncode == 0

    assert not healthy()  # no file yet
    store = SessionStore(session_file)
    origin = "https://simulator:8443"
    store.save(origin, SavedSession(cooldown_until=1e10, fingerprint="ab" * 32))
    assert not healthy()  # a file, but no login
    store.save(origin, SavedSession(cookies={"AuthCookie": "x", "UserRecord": "y"}))
    assert healthy()
    store.save(origin, SavedSession(token="t0ken"))
    assert healthy()


def test_compose_proxy_service() -> None:
    proxy = _compose()["services"]["proxy"]
    assert proxy["command"] == ["proxy"]
    assert "8675:8675" in proxy["ports"]
    assert proxy["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert "/health" in " ".join(proxy["healthcheck"]["test"])
    for key in proxy["environment"]:
        assert key in KNOWN_ENV, key


# --------------------------------------------------------------------------- the MySQL writer


def test_compose_mysql_writer_service() -> None:
    compose = _compose()
    writer = compose["services"]["mysql"]
    assert writer["command"] == ["mysql"]
    assert writer["build"] == "." and writer["image"] == compose["services"]["simulator"]["image"]
    assert writer["restart"] == "unless-stopped"
    assert writer["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    assert writer["depends_on"]["mariadb"] == {"condition": "service_healthy"}
    assert "ports" not in writer  # it listens on nothing
    assert writer["healthcheck"]["test"][:4] == ["CMD", "pwbus", "mysql", "--check"]
    for key in writer["environment"]:
        assert key in KNOWN_ENV, key


def test_compose_mysql_writer_settings_reach_mariadb_and_broker() -> None:
    from powerwall_bus.shared.settings import MysqlSettings, WriterSettings

    def settings(dotenv: dict[str, str] | None = None) -> tuple:
        sources = Sources.gather(env=_service_env("mysql", dotenv))
        return (
            load(MysqlSettings, "mysql", sources),
            load(AmqpSettings, "amqp", sources),
            load(WriterSettings, "writer", sources),
        )

    mysql, amqp, writer = settings()
    mariadb = _service_env("mariadb")
    assert (mysql.host, mysql.port) == ("mariadb", 3306)
    assert mysql.database == mariadb["MARIADB_DATABASE"]
    assert mysql.user == mariadb["MARIADB_USER"]
    assert mysql.password == mariadb["MARIADB_PASSWORD"]
    assert (amqp.host, amqp.port, amqp.vhost) == ("rabbitmq", 5672, "/")
    assert _broker_role(amqp) == "writer"
    assert (
        amqp.exchange
        == load(AmqpSettings, "amqp", Sources.gather(env=_service_env("poller"))).exchange
    )
    assert writer.migrate and not writer.meter_stream

    # Other credentials in .env reach the database service and the writer alike.
    dotenv = {"MYSQL_USER": "history", "MYSQL_PASSWORD": "p@ss/w:rd"}
    mysql, _, _ = settings(dotenv)
    mariadb = _service_env("mariadb", dotenv)
    assert (mysql.user, mysql.password) == ("history", "p@ss/w:rd")
    assert (mariadb["MARIADB_USER"], mariadb["MARIADB_PASSWORD"]) == (mysql.user, mysql.password)


def test_stack_knows_the_mysql_writer() -> None:
    from powerwall_bus.stack.plan import KNOWN

    assert KNOWN["mysql"].argv == ("mysql",)
    assert not KNOWN["mysql"].needs_gateway


# --------------------------------------------------------------------------- broker users


def _definitions(dotenv: dict[str, str] | None = None) -> dict:
    """What the broker-users service writes, made here from its command and environment."""
    from powerwall_bus.cli import build_parser, commands

    service = _compose()["services"]["broker-users"]
    args = build_parser(commands()).parse_args(service["command"])
    from powerwall_bus.shared.command import setting_flags

    env = _service_env("broker-users", dotenv)
    request = broker_users.BROKER.load(Sources.gather(flags=setting_flags(args), env=env), args)
    assert request.format == "definitions" and not request.apply
    return broker_users.definitions(request)


def _broker_role(amqp: AmqpSettings, dotenv: dict[str, str] | None = None) -> str:
    """The role whose user (and password, checked against its hash) these settings hold."""
    import base64
    import hashlib

    document = _definitions(dotenv)
    (user,) = [u for u in document["users"] if u["name"] == amqp.username]
    raw = base64.b64decode(user["password_hash"])
    assert hashlib.sha256(raw[:4] + amqp.password.encode()).digest() == raw[4:], amqp.username
    return {name: role for role, name in broker_users.ROLES.items()}[amqp.username]


def test_compose_broker_users_are_loaded_by_rabbitmq_at_boot() -> None:
    services = _compose()["services"]
    job, rabbitmq = services["broker-users"], services["rabbitmq"]
    assert job["image"] == services["poller"]["image"]
    assert job["command"][:2] == ["broker", "users"]
    output = next(a.split("=", 1)[1] for a in job["command"] if a.startswith("--output="))
    volume = next(v for v in job["volumes"] if v.endswith(":/var/lib/pwbus"))
    name = volume.split(":")[0]
    assert rabbitmq["depends_on"]["broker-users"] == {"condition": "service_completed_successfully"}
    mounted = next(v for v in rabbitmq["volumes"] if v.startswith(f"{name}:"))
    inside = mounted.split(":")[1]
    conf = next(v for v in rabbitmq["volumes"] if v.startswith("./configuration/"))
    local, target = conf.split(":")[:2]
    assert target.startswith("/etc/rabbitmq/conf.d/") and target.endswith(".conf")
    text = (ROOT / local).read_text()
    loaded = re.search(r"^load_definitions\s*=\s*(\S+)$", text, re.M)
    assert loaded and loaded.group(1) == output.replace("/var/lib/pwbus", inside)
    assert not any(key.startswith("RABBITMQ_DEFAULT") for key in rabbitmq.get("environment", {}))
    # Hashes only: no password from .env is in the file.
    document = _definitions({"PWBUS_BROKER_PROXY_PASSWORD": "Proxy-secret-9"})
    assert "Proxy-secret-9" not in json.dumps(document)
    assert document["vhosts"] == [{"name": "/"}]


def test_compose_every_bus_service_uses_its_role_and_trusts_the_poller() -> None:
    poller_user = broker_users.ROLES["poller"]
    dotenv = {broker_users.password_env(r): f"{r}-Pw@/1" for r in ("poller", "proxy", "writer")}
    for service, role in (("poller", "poller"), ("proxy", "proxy"), ("mysql", "writer")):
        amqp = load(AmqpSettings, "amqp", Sources.gather(env=_service_env(service, dotenv)))
        assert _broker_role(amqp, dotenv) == role, service
        assert amqp.password == f"{role}-Pw@/1"
        if role != "poller":
            assert amqp.poller_user == poller_user, service


# --------------------------------------------------------------------------- the LED display


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat in systemd)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (ROOT / "configuration" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_led_display_unit_runs_pwbus_hat_unprivileged_with_spi(tmp_path: Path) -> None:
    import shlex

    from powerwall_bus.cli import build_parser, commands
    from powerwall_bus.consumers.hat.command import HAT
    from powerwall_bus.shared.command import setting_flags

    unit = _unit("pwbus-hat.service")
    service = unit["Service"]
    assert set(unit) == {"Unit", "Service", "Install"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert service["User"] == ["pwbus"] and service["User"] != ["root"]
    assert {"spi", "gpio"} <= set(" ".join(service["SupplementaryGroups"]).split())
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]  # pwbus hat ends 0 with the LEDs off on it
    (env_file,) = service["EnvironmentFile"]
    assert env_file.startswith("/") and not env_file.startswith("-")
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].startswith("/") and argv[0].endswith("/pwbus")
    assert argv[1:] == ["hat", "--backend", "unicornhathd"]
    # The command line parses, and the shipped environment example is enough for it.
    args = build_parser(commands()).parse_args(argv[1:])
    dotenv: dict[str, str] = {}
    for line in (ROOT / "configuration" / "pwbus.env.example").read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            key, _, value = line.partition("=")
            dotenv[key] = value
    config = HAT.load(Sources.gather(flags=setting_flags(args), env=dotenv), args)
    assert config.backend == "unicornhathd" and config.amqp.host == "localhost"
