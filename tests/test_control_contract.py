"""The command contract's keys, schemas and documented examples (pure, no services)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from powerwall_bus.shared import contract
from powerwall_bus.shared.schemas import validate_message

DOC = Path(__file__).resolve().parents[1] / "docs" / "messages.md"
DIN = "1232100-00-E--TG121832953V3E"


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (contract.CONTROL_TEDAPI, f"control.{DIN}.tedapi"),
        (contract.CONTROL_TEDAPI_REPLY, f"control.{DIN}.tedapi.reply"),
        (contract.DISPATCH_RESULT, f"dispatch.{DIN}.result"),
    ],
)
def test_gateway_scoped_kinds_are_keyed_by_the_din_outside_the_readings(
    kind: str, key: str
) -> None:
    assert contract.routing_key(kind, DIN) == key
    assert contract.kind_of(key) == kind
    assert contract.gateway_of(key) == DIN
    assert contract.account_of(key) is None
    assert not key.startswith("powerwall.")  # the writer, proxy and displays never see them
    assert contract.routing_key(kind, "a.b*c") == key.replace(DIN, "a_b_c")


def test_neighbouring_keys_are_not_mistaken_for_commands() -> None:
    for key in ("control.resync", "control.tedapi", "control.X.other", "dispatch.result"):
        assert contract.gateway_of(key) is None, key
    assert contract.kind_of("control.X.other") == "control.X.other"


def test_documented_control_examples_validate_and_cover_every_new_kind() -> None:
    examples = re.findall(
        r"<!-- control example: (\S+) -->\n```json\n(.*?)```",
        DOC.read_text(encoding="utf-8"),
        flags=re.DOTALL,
    )
    kinds = set()
    for key, text in examples:
        assert validate_message(key, text.encode()) == [], key
        kinds.add(json.loads(text)["kind"])
    assert kinds == set(contract.GATEWAY_SCOPED_KINDS)
