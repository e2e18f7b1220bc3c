"""What a running `pwbus stack` leaves in its state folder, so other commands can find it.

``<state_dir>/stack.json`` says which process runs the stack, where its simulators answer
and which scratch folder it made (keys, certificates, the simulated gateways' sessions).
``pwbus simctl`` reads it to find the simulator without a URL; the next stack reads it to
clean up after one that was killed with SIGKILL and could not remove its scratch folder.
The stack removes the file when it ends.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RECORD_NAME", "StackRecord", "clean_after_killed_stack", "read_record"]

_LOGGER = logging.getLogger("pwbus.stack")

RECORD_NAME = "stack.json"
#: Scratch folders are always made by the stack under this prefix: nothing else is removed.
SCRATCH_PREFIX = "pwbus-stack-"


@dataclass(frozen=True)
class StackRecord:
    """A running stack: its pid, its simulators by gateway name ("" = unnamed), its scratch."""

    pid: int
    simulators: dict[str, str] = field(default_factory=dict)
    scratch: str | None = None
    page: str | None = None  # the proxy's page

    def write(self, state_dir: Path) -> Path:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / RECORD_NAME
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        temporary.replace(path)
        return path

    @property
    def running(self) -> bool:
        """Whether the process that wrote the record is still alive."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, but someone else's
            return True
        return True


def read_record(state_dir: Path) -> StackRecord | None:
    """The record in ``state_dir``, or None when there is none or it is unreadable."""
    try:
        data: Any = json.loads((state_dir / RECORD_NAME).read_text(encoding="utf-8"))
        simulators = data.get("simulators") or {}
        return StackRecord(
            pid=int(data["pid"]),
            simulators={str(k): str(v) for k, v in simulators.items()},
            scratch=data.get("scratch"),
            page=data.get("page"),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remove_record(state_dir: Path, pid: int) -> None:
    """Remove the record if it is ours (a newer stack may have replaced it)."""
    record = read_record(state_dir)
    if record is not None and record.pid == pid:
        (state_dir / RECORD_NAME).unlink(missing_ok=True)


def clean_after_killed_stack(state_dir: Path) -> str | None:
    """Remove what a stack that died without cleaning up left behind; what was removed."""
    record = read_record(state_dir)
    if record is None or record.running:
        return None
    removed = None
    scratch = Path(record.scratch) if record.scratch else None
    if scratch is not None and scratch.name.startswith(SCRATCH_PREFIX) and scratch.is_dir():
        shutil.rmtree(scratch, ignore_errors=True)
        removed = str(scratch)
    (state_dir / RECORD_NAME).unlink(missing_ok=True)
    return removed
