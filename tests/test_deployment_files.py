"""compose.yaml, the Dockerfile and configuration/ checked against the code (no Docker here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from shared.settings import (
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
            assert key in KNOWN_ENV or IMAGE_ENV.match(key), f"{name}: unknown variable {key}"


def test_compose_simulator_password_reaches_the_simulator() -> None:
    env = _compose()["services"]["simulator"]["environment"]
    assert "PW_PASSWORD" in env
    from shared.settings import SimulatorSettings

    sim = load(SimulatorSettings, "simulator", Sources.gather(env={"PW_PASSWORD": "xyzzy-1"}))
    assert sim.password == "xyzzy-1"


def test_dockerfile_installs_every_package_and_uses_pwbus() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("shared", "producers", "consumers", "simulator"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["pwbus"]' in dockerfile
    assert "USER pwbus" in dockerfile


def test_example_config_is_current_and_loads(tmp_path: Path) -> None:
    shipped = (ROOT / "configuration" / "pwbus.toml.example").read_text()
    assert shipped == example_config(), (
        "run: pwbus config --example > configuration/pwbus.toml.example"
    )
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line
        for line in shipped.splitlines()
    )
    config = tmp_path / "pwbus.toml"
    config.write_text(uncommented)
    gateway = load(GatewaySettings, "gateway", Sources.gather(env={}, config_file=config))
    assert gateway.port == 443


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
