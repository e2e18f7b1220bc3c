"""Is a message worth storing? The writer's schema check, with a fast path for valid ones."""

from __future__ import annotations

import json
import logging
from typing import Any

from powerwall_bus.shared.messages import kind_of
from powerwall_bus.shared.schemas import schema_file_for, schemas, validate_message
from powerwall_bus.shared.topology import METER_STREAM

_LOGGER = logging.getLogger(__name__)


class MessageCheck:
    """``validate_message`` with a fast path for valid messages.

    ``shared.schemas.validate_message`` (the Python ``jsonschema`` package) costs about
    0.5 ms for a meters message, which alone would cap the writer near 2,000 messages/s.
    When the Rust ``jsonschema_rs`` package is installed (it comes with schemathesis), the
    same schemas are compiled with it and a message it accepts, whose ``kind`` matches, is
    accepted without the slow check (about 0.02 ms). Anything it rejects goes through
    ``validate_message``, which has the last word and writes the reasons; without
    ``jsonschema_rs`` every message does.
    """

    def __init__(self, *, fast: bool = True) -> None:
        self._fast: dict[str, Any] | None = None
        self._by_key: dict[str, Any] = {}
        if fast:
            try:
                import jsonschema_rs

                documents = schemas()
                registry = jsonschema_rs.Registry([(doc["$id"], doc) for doc in documents.values()])
                self._fast = {
                    name: jsonschema_rs.validator_for(document, registry=registry)
                    for name, document in documents.items()
                }
            except Exception as exc:  # not installed, or cannot compile: slow path only
                _LOGGER.debug("schema checks without jsonschema_rs (%s)", type(exc).__name__)
                self._fast = None

    @property
    def fast(self) -> bool:
        """True when the jsonschema_rs fast path is in use."""
        return self._fast is not None

    def _fast_validator(self, key: str) -> Any:
        if self._fast is None:
            return None
        if key not in self._by_key:
            try:
                validator = self._fast.get(schema_file_for(key))
            except LookupError:
                validator = None
            if len(self._by_key) < 1024:  # keys come from messages: bound the cache
                self._by_key[key] = validator
            return validator
        return self._by_key[key]

    def problems(self, key: str, body: bytes, document: Any = None) -> list[str]:
        """The one-line schema errors of ``body`` under ``key`` (kind or routing key).

        ``document``, when given, is ``body`` already parsed (the writer has it from the
        envelope), which saves parsing it again on the fast path.
        """
        validator = self._fast_validator(key)
        if validator is not None:
            if document is None:
                try:
                    document = json.loads(body)
                except (ValueError, UnicodeDecodeError):
                    document = None
            if (
                isinstance(document, dict)
                and (key == METER_STREAM or document.get("kind") == kind_of(key))
                and validator.is_valid(document)
            ):
                return []
        return validate_message(key, body)
