"""Replay mode: serve recorded gateway bodies from a folder, byte for byte.

Files are named by endpoint path with ``/`` as ``_`` (``/api/meters/aggregates`` ->
``api_meters_aggregates.json``). A ``__variant`` suffix marks one of several recordings of an
endpoint (``api_status__21.44-running.json``); ``variant`` picks which one is served, and a
file without a suffix is served whatever the variant. ``.http`` files hold a raw reply
(status line, headers, blank line, body) and are served with that status and content type.
Because the name mangling loses information (``system_status`` vs ``system/status``), a
request path is turned into a name and looked up, never the other way round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.shared.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

_CONTENT_TYPES = {
    ".json": "application/json",
    ".txt": "text/plain",
    ".bin": "application/octet-stream",
}


@dataclass(frozen=True)
class RecordedReply:
    """One recorded answer."""

    status: int
    body: bytes
    content_type: str
    source: str  # the file it came from


class FixtureReplay:
    """An index of a fixture folder for one variant."""

    def __init__(self, folder: Path, variant: str | None = None) -> None:
        if not folder.is_dir():
            raise ConfigError("simulator.fixtures", f"{folder} is not a folder")
        self.folder = folder
        self.variant = variant
        self._files: dict[str, Path] = {}
        plain: dict[str, Path] = {}
        variants_seen: set[str] = set()
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix not in (*_CONTENT_TYPES, ".http"):
                continue
            name, _, file_variant = path.stem.partition("__")
            if file_variant:
                variants_seen.add(file_variant)
                if file_variant == variant:
                    self._files[name] = path
            else:
                plain.setdefault(name, path)
        for name, path in plain.items():
            self._files.setdefault(name, path)
        if variant and variant not in variants_seen:
            raise ConfigError(
                "simulator.variant",
                f"no file in {folder} has the variant {variant!r}"
                + (f" (known: {', '.join(sorted(variants_seen)[:8])}...)" if variants_seen else ""),
            )
        _LOGGER.info("replaying %d recorded endpoints from %s", len(self._files), folder)

    @staticmethod
    def name_for(path: str) -> str:
        """The file stem a request path maps to."""
        return path.strip("/").replace("/", "_")

    @property
    def paths(self) -> frozenset[str]:
        """File stems that can be served (for logs and listings)."""
        return frozenset(self._files)

    def lookup(self, path: str) -> RecordedReply | None:
        """The recorded reply for a request path, or None when nothing was recorded."""
        file = self._files.get(self.name_for(path))
        if file is None:
            return None
        raw = file.read_bytes()
        if file.suffix == ".http":
            return parse_http_capture(raw, str(file))
        return RecordedReply(200, raw, _CONTENT_TYPES[file.suffix], str(file))


def parse_http_capture(raw: bytes, source: str = "") -> RecordedReply:
    """Parse ``curl -i`` output: status line, headers, blank line, body."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            break
    else:
        head, body = raw, b""
    lines = head.decode("latin-1").splitlines()
    if not lines or not lines[0].upper().startswith("HTTP/"):
        raise ConfigError("simulator.fixtures", f"{source} does not start with an HTTP status line")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ConfigError("simulator.fixtures", f"{source} has a malformed status line") from None
    content_type = "application/json"
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-type":
            content_type = value.strip()
    return RecordedReply(status, body, content_type, source)
