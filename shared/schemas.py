"""JSON Schemas of the message contract, loaded once and cached.

The schemas live in ``schema/messages/*.json`` (one per message kind; ``envelope.json`` is
the common envelope the others ``$ref`` by ``$id``). They are read from the source tree when
running from a checkout, else from the installed ``schema.messages`` package data.

Consumers that must not store garbage (the MySQL writer) check each body with
:func:`validate_message` and dead-letter it when the list of errors is not empty::

    errors = validate_message(properties.type or method.routing_key, body)

Pass ``properties.type`` when you have it: a resync answer arrives through the default
exchange, so its routing key is your queue's name, while ``type`` is always the kind.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from powerwall_bus.shared import contract
from powerwall_bus.shared.contract import kind_of

__all__ = [
    "SCHEMA_DIR",
    "UnknownKind",
    "schema_file_for",
    "schemas",
    "validate_message",
    "validator_for",
]

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema" / "messages"

_MAX_ERRORS = 20
_MAX_ERROR_LENGTH = 300


class UnknownKind(LookupError):
    """No schema describes this message kind (or routing key)."""


def _read_files() -> Iterator[tuple[str, str]]:
    """(file name, text) of every schema: the checkout first, else the package data."""
    if SCHEMA_DIR.is_dir() and any(SCHEMA_DIR.glob("*.json")):
        for path in sorted(SCHEMA_DIR.glob("*.json")):
            yield path.name, path.read_text(encoding="utf-8")
        return
    folder = importlib.resources.files("powerwall_bus.schema") / "messages"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            yield entry.name, entry.read_text(encoding="utf-8")


@functools.cache
def schemas() -> dict[str, dict[str, Any]]:
    """File name -> parsed schema, for every schema of the contract."""
    loaded = {name: json.loads(text) for name, text in _read_files()}
    if not loaded:
        raise FileNotFoundError(f"no message schemas in {SCHEMA_DIR} nor in package 'schema'")
    return loaded


@functools.cache
def _registry() -> Registry[Any]:
    resources = [
        (document["$id"], Resource.from_contents(document, default_specification=DRAFT202012))
        for document in schemas().values()
    ]
    return Registry().with_resources(resources).crawl()


def schema_file_for(kind: str) -> str:
    """The schema file describing ``kind`` (a kind or a routing key), from the contract
    table: every ``api.<path>`` without a schema of its own uses ``api.json``."""
    name = contract.schema_file(kind_of(kind))
    if name is None:
        raise UnknownKind(f"no schema for message kind {kind!r}")
    return name


@functools.cache
def _validator(name: str) -> Validator:
    schema = schemas()[name]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def validator_for(kind: str) -> Validator:
    """The cached validator of one message kind: "MeterStream", "meters", "soe",
    "grid_status", "vitals", "poller.status" or "api.<path>" (routing keys work too).

    Raises :class:`UnknownKind` when no schema describes the kind.
    """
    return _validator(schema_file_for(kind))


def _one_line(error: ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(body)"
    text = " ".join(f"{where}: {error.message}".split())
    if len(text) > _MAX_ERROR_LENGTH:
        text = text[: _MAX_ERROR_LENGTH - 3] + "..."
    return text


def validate_message(routing_key: str, body: bytes) -> list[str]:
    """Check one message body against the schema of its kind.

    ``routing_key`` is the routing key (``powerwall.<DIN>.meters``, ``MeterStream``), a binding
    pattern (``powerwall.*.meters``) or the kind (the AMQP ``type`` property). Returns
    one-line, human-readable errors; an empty list means the message is valid.
    """
    try:
        validator = validator_for(routing_key)
    except UnknownKind as exc:
        return [str(exc)]
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"(body): not JSON ({type(exc).__name__}: {exc})"]
    errors = sorted(
        validator.iter_errors(document),
        key=lambda e: ([str(p) for p in e.absolute_path], e.message),
    )
    problems = [_one_line(error) for error in errors[:_MAX_ERRORS]]
    if len(errors) > _MAX_ERRORS:
        problems.append(f"... and {len(errors) - _MAX_ERRORS} more errors")
    if routing_key != contract.METER_STREAM and isinstance(document, dict):
        expected = kind_of(routing_key)
        kind = document.get("kind")
        reported = any(list(error.absolute_path) == ["kind"] for error in errors)
        if isinstance(kind, str) and kind != expected and not reported:
            problems.append(f"kind: {kind!r} does not match the routing key's kind {expected!r}")
    return problems
