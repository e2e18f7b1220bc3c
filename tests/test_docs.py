"""``pwbus docs``: the generated pages match the code, and a stale copy is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powerwall_bus.cli import main
from powerwall_bus.consumers.proxy.app import routed_paths
from powerwall_bus.docs import ENDPOINTS_PAGE, MESSAGES_PAGE, pages
from powerwall_bus.shared import contract
from powerwall_bus.shared.schemas import SCHEMA_DIR

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return pages()


@pytest.mark.parametrize("name", [ENDPOINTS_PAGE, MESSAGES_PAGE])
def test_the_committed_page_is_what_pwbus_docs_writes(generated: dict[str, str], name: str) -> None:
    assert (DOCS / name).read_text("utf-8") == generated[name], f"run: pwbus docs ({name})"


def test_every_route_of_the_proxy_is_listed(generated: dict[str, str]) -> None:
    page = generated[ENDPOINTS_PAGE]
    missing = [path for path in routed_paths() if f"| `{path}` |" not in page]
    assert missing == []


def test_the_facade_lists_its_own_routes_and_every_polled_path(generated: dict[str, str]) -> None:
    facade = generated[ENDPOINTS_PAGE].split("## Facade", 1)[1]
    assert "| `POST /api/login/Basic` |" in facade
    polled = [e.path for e in contract.ENDPOINTS if e.poll is not None]
    assert polled and all(f"| `GET {path}` |" in facade for path in polled)


def test_every_schema_and_every_top_level_field_is_listed(generated: dict[str, str]) -> None:
    page = generated[MESSAGES_PAGE]
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text("utf-8"))
        assert f"## `{path.name}`" in page
        section = page.split(f"## `{path.name}`", 1)[1].split("\n## ", 1)[0]
        for field in schema.get("properties", {}):
            assert f"| `{field}` |" in section, (path.name, field)
    soe = page.split("## `soe.json`", 1)[1].split("\n## ", 1)[0]
    assert "| `payload.percentage` | number | yes | ≥ 0; ≤ 100 |" in soe


def test_check_names_a_stale_page_in_one_line_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ENDPOINTS_PAGE).write_text("old\n")
    assert main(["docs", "--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ENDPOINTS_PAGE in err and MESSAGES_PAGE in err
    assert (tmp_path / ENDPOINTS_PAGE).read_text() == "old\n"  # --check writes nothing
    assert main(["docs", "--out", str(tmp_path)]) == 0
    assert main(["docs", "--out", str(tmp_path), "--check"]) == 0
    assert (tmp_path / MESSAGES_PAGE).read_text("utf-8") == pages()[MESSAGES_PAGE]
