"""Packaging: one import name of our own, the same for a wheel, ``pip install .`` and ``-e .``.

Everything is built and installed offline (no build isolation, no index): the build tools
and the dependencies come from the venv running the tests, through a ``.pth`` line, so a
fresh venv holds nothing of ours but what the install under test put there. The PyPI
package ``schema`` (a test dependency) sits beside it to prove the two names no longer
collide.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]
OLD_TOP_LEVEL = ("shared", "producers", "consumers", "simulator", "schema")

#: What an installed copy must be able to do, run from a folder outside the checkout.
SMOKE = """
import importlib.resources, json, sys
import schema  # the PyPI package, not ours
assert hasattr(schema, "Schema") and hasattr(schema, "And"), schema.__file__
import powerwall_bus
from powerwall_bus.shared.schemas import validator_for
from powerwall_bus.consumers.mysql.migrate import available_migrations
from powerwall_bus.consumers.proxy import page
assert validator_for("meters") is not None
assert available_migrations()[0].version == 1, available_migrations()
assert (importlib.resources.files("powerwall_bus.consumers.proxy") / "web" / "app.js").is_file()
print(json.dumps({"version": powerwall_bus.__version__, "file": powerwall_bus.__file__}))
"""


def _source_tree(tmp_path: Path) -> Path:
    """A copy of the files git tracks (plus new ones), so builds never touch the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    target = tmp_path / "src"
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _bare_venv(where: Path) -> Path:
    """A venv that sees our dependencies (not our package) through one .pth line."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Directories named in a .pth are added to sys.path, but *their* .pth files are not
    # run: the test venv's own editable install of powerwall-bus stays invisible.
    (Path(purelib) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _pip(*args: str | Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *map(str, args)],
        check=True,
        capture_output=True,
    )


def _smoke(python: Path, cwd: Path) -> str:
    ran = subprocess.run(
        [str(python), "-c", SMOKE], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_every_package_folder_is_declared() -> None:
    declared = set(SETUPTOOLS["packages"])
    for name, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((name, *relative)) in declared, init
    assert all(name.startswith("powerwall_bus") for name in declared)
    assert PYPROJECT["project"]["scripts"]["pwbus"] == "powerwall_bus.cli:main"


def test_no_module_imports_an_old_top_level_name() -> None:
    offenders = []
    for folder in [*PACKAGE_DIR.values(), "tests", "benchmarks"]:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text("utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                    for name in names
                    if name.split(".")[0] in OLD_TOP_LEVEL
                ]
    assert offenders == []


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import powerwall_bus

    assert powerwall_bus.__version__ == version("powerwall-bus")
    written = [
        str(path.relative_to(ROOT))
        for folder in PACKAGE_DIR.values()
        for path in (ROOT / folder).rglob("*.py")
        if f'"{PYPROJECT["project"]["version"]}"' in path.read_text("utf-8")
    ]
    assert written == []


@pytest.mark.slow
def test_wheel_holds_only_powerwall_bus_and_runs_beside_pypi_schema(tmp_path: Path) -> None:
    source = _source_tree(tmp_path)
    _pip(
        "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path), str(source)
    )
    (wheel,) = tmp_path.glob("powerwall_bus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"powerwall_bus"}
    for data in (
        "powerwall_bus/py.typed",
        "powerwall_bus/schema/users.sql",
        "powerwall_bus/schema/migrations/0001_initial.sql",
        "powerwall_bus/schema/reports/daily.sql",
        "powerwall_bus/schema/messages/meters.json",
        "powerwall_bus/consumers/proxy/web/app.js",
    ):
        assert data in names
    sql_in_tree = {p.relative_to(ROOT / "schema") for p in (ROOT / "schema").rglob("*.sql")}
    assert {Path("powerwall_bus/schema") / p for p in sql_in_tree} <= {Path(n) for n in names}

    python = _bare_venv(tmp_path / "venv")
    _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel))
    out = _smoke(python, tmp_path)
    assert "site-packages/powerwall_bus/__init__.py" in out
    pwbus = subprocess.run(
        [str(python.parent / "pwbus"), "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert pwbus.stdout.strip() == f"pwbus {PYPROJECT['project']['version']}"


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_from_source_runs_beside_pypi_schema(tmp_path: Path, editable: bool) -> None:
    source = _source_tree(tmp_path)
    python = _bare_venv(tmp_path / "venv")
    target = ["-e", str(source)] if editable else [str(source)]
    _pip("--python", str(python), "install", "--no-deps", "--no-build-isolation", *target)
    out = _smoke(python, tmp_path)
    # An editable install runs the files of the source tree; a plain one runs copies.
    assert (str(source / "pwbus" / "__init__.py") in out) == editable
    help_text = subprocess.run(
        [str(python), "-m", "powerwall_bus", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert help_text.returncode == 0 and "poller" in help_text.stdout


def test_runs_without_the_fast_extra() -> None:
    """The Raspberry Pi path: no jsonschema-rs (no armv7 wheel) nor orjson; pure-Python
    checks and parsing instead."""
    script = """
import importlib, json, pkgutil, sys
sys.modules["jsonschema_rs"] = None  # as if it were not installed: importing it fails
sys.modules["orjson"] = None
count = 0
for package in sys.argv[1:]:
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not module.name.startswith("__"):
            importlib.import_module(f"{package}.{module.name}")
            count += 1
assert count > 50, count
from powerwall_bus.consumers.mysql.checks import MessageCheck
check = MessageCheck()
good = {"version": 1, "kind": "soe", "time": "2026-01-01T00:00:00.000Z",
        "gateway": "1232100-00-E--TG1", "endpoint": "/api/system_status/soe",
        "payload": {"percentage": 55.5}}
bad = dict(good, payload={"percentage": "full"})
from powerwall_bus.shared import messages
from powerwall_bus.shared.messages import parse_envelope
envelope = parse_envelope(json.dumps(good).encode())
print(json.dumps([check.fast, messages._orjson is None, envelope.payload,
                  check.problems("soe", json.dumps(good).encode(), envelope.document),
                  bool(check.problems("soe", json.dumps(bad).encode()))]))
"""
    ran = subprocess.run(
        [sys.executable, "-c", script, *SETUPTOOLS["packages"]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == '[false, true, {"percentage": 55.5}, [], true]'
