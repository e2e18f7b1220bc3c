"""Which gateway a consumer follows (shared/follow.py): table-driven, no I/O."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from powerwall_bus.shared.follow import (
    Gateway,
    GatewayFollower,
    GatewayView,
    Verdict,
    looks_like_din,
    sender_of,
)
from powerwall_bus.shared.messages import GATEWAY_HEADER, GATEWAY_NAME_HEADER

A = "1232100-00-E--TG000000000AAA"
B = "1232100-00-E--TG000000000BBB"
TAKE, FIRST, SKIP, NEW = Verdict.TAKE, Verdict.TAKE_FIRST, Verdict.SKIP, Verdict.SKIP_NEW


@pytest.mark.parametrize(
    ("value", "din"),
    [
        (A, True),
        ("1152100-13-J--CN321365D2U06A", True),
        ("home", False),
        ("", False),
        ("--TG1", False),
        ("1232100-00-E--", False),
        ("1232100.00-E--TG1", False),
    ],
)
def test_what_looks_like_a_din(value: str, din: bool) -> None:
    assert looks_like_din(value) is din


@pytest.mark.parametrize(
    ("headers", "body_gateway", "expected"),
    [
        ({GATEWAY_HEADER: A, GATEWAY_NAME_HEADER: "home"}, A, Gateway(A, "home")),
        ({GATEWAY_HEADER: A}, B, Gateway(A)),  # the header is what the poller meant
        ({GATEWAY_HEADER: A.encode(), GATEWAY_NAME_HEADER: b"home"}, None, Gateway(A, "home")),
        (None, A, Gateway(A)),  # an envelope from a publisher that sets no headers
        ({}, None, Gateway()),  # a Tesla-API MeterStream: no identity at all
        ({GATEWAY_HEADER: "unknown", GATEWAY_NAME_HEADER: "home"}, "unknown", Gateway("", "home")),
        ({GATEWAY_HEADER: 7, GATEWAY_NAME_HEADER: None}, None, Gateway()),  # not text: ignored
        ({"schema_version": 1}, " unknown ", Gateway()),
    ],
)
def test_the_sender_of_a_delivery(
    headers: dict[str, Any] | None, body_gateway: str | None, expected: Gateway
) -> None:
    assert sender_of(headers, body_gateway) == expected


# (wanted, [(din, name, verdict), ...], problem after the last message or None)
_SEQUENCES: list[Any] = [
    pytest.param("", [(A, "", FIRST), (A, "", TAKE), ("", "", TAKE)], None, id="one-gateway"),
    pytest.param(
        "",
        [(A, "home", FIRST), (B, "garage", NEW), (B, "garage", SKIP), (A, "", TAKE)],
        f"several gateways on the bus (home ({A}), garage ({B})): set PWBUS_GATEWAY",
        id="unset-locks-on-the-first-and-reports-the-second",
    ),
    pytest.param(
        "",
        [("", "", TAKE), (A, "", FIRST), (B, "", NEW), ("", "", SKIP)],
        f"several gateways on the bus ({A}, {B}): set PWBUS_GATEWAY",
        id="unset-no-identity-only-while-one-gateway",
    ),
    pytest.param(
        "",
        [("unknown", "home", FIRST), (A, "home", TAKE), (A, "", TAKE), ("unknown", "x", NEW)],
        "several gateways on the bus (home (" + A + "), x): set PWBUS_GATEWAY",
        id="unset-a-name-before-the-din-is-known",
    ),
    pytest.param(
        B,
        [(A, "home", NEW), (A, "", SKIP), (B, "", FIRST), (B, "garage", TAKE), ("", "", SKIP)],
        None,
        id="by-din",
    ),
    pytest.param(
        "garage",
        [(A, "home", NEW), (B, "garage", FIRST), (B, "", TAKE), ("unknown", "garage", TAKE)],
        None,
        id="by-name-then-its-din-alone",
    ),
    pytest.param(
        "garage",
        [("unknown", "garage", FIRST), (B, "garage", TAKE), (B, "", TAKE), (A, "", NEW)],
        None,
        id="by-name-before-the-din-is-known",
    ),
    pytest.param(
        "garage",
        [(A, "home", NEW), ("", "", SKIP)],
        f"nothing from gateway 'garage' yet; the bus carries home ({A})",
        id="wanted-not-on-the-bus",
    ),
    pytest.param("garage", [("", "", SKIP)], None, id="wanted-never-takes-no-identity"),
]


@pytest.mark.parametrize(("wanted", "messages", "problem"), _SEQUENCES)
def test_follow(wanted: str, messages: list[tuple[str, str, Verdict]], problem: str | None) -> None:
    follower = GatewayFollower(wanted)
    for number, (din, name, verdict) in enumerate(messages, 1):
        assert follower.accept(din, name) is verdict, (number, din, name)
    assert follower.problem() == problem


def test_the_view_for_stats_and_health() -> None:
    follower = GatewayFollower(" home ")
    assert follower.view() == GatewayView("home")
    assert follower.view().document() == {"wanted": "home", "din": None, "name": None, "others": []}
    follower.accept(B, "garage")
    follower.accept(A, "home")
    assert follower.view().document() == {
        "wanted": "home",
        "din": A,
        "name": "home",
        "others": [f"garage ({B})"],
    }
    assert follower.problem() is None  # another gateway is no problem when one is chosen
    assert Verdict.TAKE.take and Verdict.TAKE_FIRST.take
    assert not Verdict.SKIP.take and not Verdict.SKIP_NEW.take


def test_every_consumer_says_a_change_of_gateway_once_in_the_same_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("powerwall_bus.test_follow")
    caplog.set_level(logging.INFO, logger=logger.name)
    unset = GatewayFollower()
    for din in (A, A, B, B):
        unset.say(unset.accept(din), logger)
    chosen = GatewayFollower(B)
    for din in (A, A, B):
        chosen.say(chosen.accept(din), logger)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        ("INFO", f"following gateway {A}"),
        (
            "WARNING",
            f"gateway {B} is on the bus too: following only {A}; set PWBUS_GATEWAY "
            "(or --gateway) to the DIN or name of the one to follow",
        ),
        ("INFO", f"ignoring gateway {A}: following {B!r}"),
        ("INFO", f"following gateway {B}"),
    ]
