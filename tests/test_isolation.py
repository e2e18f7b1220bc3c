"""Tests can never reach a real installation: only the PWBUS_TEST_* addresses are used."""

from __future__ import annotations

import os

import pytest

from powerwall_bus.shared.settings import option_table
from tests.support import services


def test_the_session_runs_without_any_production_setting() -> None:
    names = {name for _, env_names, _ in option_table() for name in env_names}
    assert {"AMQP_URL", "MYSQL_URL", "PW_HOST", "PW_PASSWORD"} <= names
    assert sorted(names & set(os.environ)) == []
    assert "PWBUS_CONFIG" not in os.environ


def test_scrubbing_removes_production_names_and_keeps_the_test_ones() -> None:
    environ = {
        "AMQP_URL": "amqp://admin:real@rabbit.home/prod",
        "MYSQL_URL": "mysql://root:real@db.home/powerwall",
        "MYSQL_DATABASE": "powerwall",
        "PWBUS_CONFIG": "/etc/pwbus.toml",
        "PWBUS_TEST_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "HOME": "/root",
    }
    removed = services.scrub_production_environment(environ)
    assert removed == ["AMQP_URL", "MYSQL_DATABASE", "MYSQL_URL", "PWBUS_CONFIG"]
    assert set(environ) == {"PWBUS_TEST_AMQP_URL", "HOME"}


def test_a_production_url_is_never_taken_for_a_test_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(services.MYSQL_ENV, raising=False)
    monkeypatch.setenv("MYSQL_URL", "mysql://root:real@db.home/powerwall")
    monkeypatch.setattr(services, "docker_available", lambda: False)
    with pytest.raises(pytest.fail.Exception, match="PWBUS_TEST_MYSQL_URL"):  # noqa: SIM117
        with services.mysql_url():
            pass
