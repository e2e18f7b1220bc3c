"""The ``pwbus`` command: a table of components, lazy imports, layers that point one way."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from powerwall_bus.cli import COMMANDS, build_parser, commands, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("aiohttp", "mysql", "pika", "matplotlib", "requests", "jsonschema_rs")

#: folder -> the powerwall_bus packages its modules may import (besides their own).
ALLOWED = {
    "shared": {"powerwall_bus.shared"},
    "producers": {"powerwall_bus.shared", "powerwall_bus.producers"},
    "consumers": {"powerwall_bus.shared", "powerwall_bus.consumers"},
    "simulator": {"powerwall_bus.shared", "powerwall_bus.simulator"},
}


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_layers_point_one_way(folder: str) -> None:
    """shared imports no component; no component imports another, the CLI or the stack."""
    wrong = []
    for path in (ROOT / folder).rglob("*.py"):
        for line, module, names in _imports(path):
            if not module.startswith("powerwall_bus"):
                continue
            if module == "powerwall_bus" and names == ["__version__"]:
                continue  # the package metadata, nothing more
            if not any(module == a or module.startswith(a + ".") for a in ALLOWED[folder]):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert wrong == []


def test_the_table_names_every_command_once_and_each_builds_its_parser() -> None:
    table = commands()
    names = [command.name for command in table]
    assert len(names) == len(set(names)) == len(COMMANDS)
    assert {"stack", "poller", "proxy", "mysql", "db", "report", "simulate", "simctl"} <= set(names)
    parser = build_parser(table)
    assert parser.parse_args(["poller", "--meters-interval", "1"]).command == "poller"


def test_building_the_parser_and_the_settings_imports_no_component_library() -> None:
    """A Pi running one light component must not load the web server or database driver."""
    script = (
        "import sys\n"
        "from powerwall_bus.cli import build_parser, commands\n"
        "from powerwall_bus.shared.settings import Sources\n"
        "table = commands()\n"
        "parser = build_parser(table)\n"
        "for argv in (['proxy'], ['mysql'], ['poller'], ['simulate'], ['config']):\n"
        "    args = parser.parse_args(argv)\n"
        "    command = {c.name: c for c in table}[args.command]\n"
        "    env = {'PW_HOST': '127.0.0.1', 'PW_PASSWORD': 'x' * 8}\n"
        "    command.load(Sources.gather(env=env), args)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert ran.stdout.strip() == "[]", ran.stderr


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"pwbus {version('powerwall-bus')}"


def test_config_without_sections_shows_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    from powerwall_bus.shared.settings import SECTIONS

    assert main(["config"]) == 0
    shown = {line.split(".", 1)[0] for line in capsys.readouterr().out.splitlines()}
    assert shown == set(SECTIONS)


def _db_users(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PWBUS_DB_")}
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "db", "users", *argv],
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_db_users_takes_passwords_from_the_environment_never_from_flags() -> None:
    refused = _db_users({}, "--writer-password", "Secret-1")
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr

    missing = _db_users({"PWBUS_DB_WRITER_PASSWORD": "Writer-pw1"})
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "pwbus db: configuration: db.reader_password: set PWBUS_DB_READER_PASSWORD "
        "(or run in a terminal to be asked)"
    )
    assert "Writer-pw1" not in missing.stderr

    printed = _db_users(
        {"PWBUS_DB_WRITER_PASSWORD": "Writer-pw1", "PWBUS_DB_READER_PASSWORD": "Reader-pw2"}
    )
    assert printed.returncode == 0, printed.stderr
    assert "IDENTIFIED BY 'Writer-pw1'" in printed.stdout
    assert "IDENTIFIED BY 'Reader-pw2'" in printed.stdout


def test_passwords_are_asked_twice_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from powerwall_bus.shared.command import password_from_env_or_prompt
    from powerwall_bus.shared.errors import ConfigError
    from powerwall_bus.shared.settings import Sources

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    none = Sources.gather(env={})
    answers = iter(["Typed-pw1", "Typed-pw1"])
    got = password_from_env_or_prompt(none, "db.writer_password", "W_ENV", "writer",
                                      ask=lambda _: next(answers))  # fmt: skip
    assert got == "Typed-pw1"
    differ = iter(["one-pass", "two-pass"])
    with pytest.raises(ConfigError, match="differ"):
        password_from_env_or_prompt(none, "db.writer_password", "W_ENV", "writer",
                                    ask=lambda _: next(differ))  # fmt: skip
    from_env = Sources.gather(env={"W_ENV": "Env-pw1"})
    assert password_from_env_or_prompt(from_env, "k", "W_ENV", "writer") == "Env-pw1"
