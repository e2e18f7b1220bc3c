"""Acting through Tesla's cloud: the signed relay (a :class:`SignedChannel`), and the Fleet API.

:class:`CloudChannel` carries the dispatcher's signed ``RoutableMessage`` through the Owner
API ``device_command`` relay (or the ``command`` endpoint's ``grpc_signed_command``) and
hands back a routable message, so everything downstream (``parse_response``, the
``dispatch.result`` readback) is the same as over the LAN. Same key, same Max Backup.

:class:`FleetActuator` is the alternative for users who would rather not pair a key: the
documented Fleet API energy endpoints. There is no timed event there, so a decision maps as:

* ``Schedule(start, end)`` -> "hold now, restore at ``end``": the reserve (or the mode) the
  site has is saved to a state file *first*, then the reserve is set to 100 % (method
  ``reserve``) or the mode to ``backup`` (method ``mode``), then ``site_info`` is read back;
* ``Cancel`` -> the saved value is written back and the file removed;
* :meth:`FleetActuator.current` is what ``decide()`` takes as the gateway's event: the saved
  hold; once its end has passed it restores first and answers None.

The limits, also for the docs: the restore needs this process running at the end (it is
not the gateway's own timer: a dispatcher that is down leaves the reserve at 100 % until it
starts again, when it restores at once from the state file); recent firmware caps a cloud
reserve at 80 % and turns 100 % into 80 % silently, which the readback reports as a refusal
(use ``mode`` then, or the signed relay); a change can take minutes to reach the Powerwall;
a Max Backup set by hand is not visible here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from powerwall_bus.consumers.dispatch.decide import Action, Cancel, Schedule
from powerwall_bus.shared.errors import CloudCommandRefused, CloudError, CloudNotFound, TedapiFault
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.settings import CloudSettings
from powerwall_bus.shared.tedapi import responder
from powerwall_bus.shared.tedapi.cloud import device_command_body, signed_command_body
from powerwall_bus.shared.tedapi.commands import Kind
from powerwall_bus.shared.tedapi.signing import EXPIRES_AFTER
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud
from powerwall_bus.shared.tesla_cloud.relay import routable_from_answer

__all__ = [
    "FLEET_HOLD_FILE",
    "FLEET_METHODS",
    "CloudChannel",
    "FleetActuator",
    "FleetChannel",
    "FleetHold",
    "open_cloud_channel",
    "open_fleet_actuator",
    "open_fleet_channel",
]

_LOGGER = logging.getLogger(__name__)

FLEET_METHODS = ("reserve", "mode")
#: The Fleet API hold's state file in the state folder.
FLEET_HOLD_FILE = "fleet-hold.json"
HOLD_RESERVE = 100
HOLD_MODE = "backup"


class CloudChannel:
    """A :class:`~powerwall_bus.consumers.dispatch.channel.SignedChannel` through the cloud.

    ``via`` is ``device_command`` (the Owner API relay, what Tesla-API's cloud script uses)
    or ``command`` (``grpc_signed_command``, what removing a key through the cloud uses).
    """

    name = "cloud"

    def __init__(
        self, cloud: TeslaCloud, *, via: str = "device_command", din: str | None = None
    ) -> None:
        if via not in ("device_command", "command"):
            raise ValueError("via is device_command or command")
        self._cloud = cloud
        self._via = via
        self._expected = din

    @property
    def din(self) -> str:
        """The gateway the site's messages must be signed for (found through ``products``).

        When the channel was opened for a DIN (the dispatcher's gateway), the cloud's site
        must have that gateway: commands signed for one gateway never go to another site.
        """
        site = self._cloud.site()
        if self._expected and site.din != self._expected:
            raise CloudNotFound(
                f"the cloud's energy site {site.site_id} has gateway {site.din}, not "
                f"{self._expected}: set cloud.energy_site_id to the site of {self._expected}"
            )
        return site.din

    def send(self, routable: bytes, *, timeout: float) -> bytes:
        """The gateway's answer, as a ``RoutableMessage`` (an envelope or a signature fault)."""
        if self._via == "device_command":
            answer = self._cloud.device_command(
                device_command_body(routable, self.din), timeout=timeout
            )
        else:
            answer = self._cloud.signed_command(signed_command_body(routable), timeout=timeout)
        return routable_from_answer(answer)

    def close(self) -> None:
        """Close the cloud client's connections."""
        self._cloud.close()


@dataclass(frozen=True)
class FleetHold:
    """A hold made through the Fleet API: until when, and what to put back afterwards."""

    start: datetime
    end: datetime
    method: str
    restore: int | str  # the reserve percent, or the operation mode, found before the hold

    @property
    def event(self) -> BackupEvent:
        return BackupEvent(self.start, self.end)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "method": self.method,
            "restore": self.restore,
        }

    @classmethod
    def from_json(cls, record: Any) -> FleetHold:
        restore = record["restore"]
        if not isinstance(restore, int | str):
            raise TypeError("restore")
        return cls(
            datetime.fromisoformat(record["start"]).astimezone(UTC),
            datetime.fromisoformat(record["end"]).astimezone(UTC),
            str(record["method"]),
            restore,
        )


class FleetActuator:
    """Applies ``decide()`` actions with the Fleet API's reserve or mode (see the module)."""

    name = "fleet"

    def __init__(
        self,
        cloud: TeslaCloud,
        state_file: Path,
        *,
        method: str = "mode",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if method not in FLEET_METHODS:
            raise ValueError(f"method is one of {', '.join(FLEET_METHODS)}")
        self._cloud = cloud
        self._file = state_file
        self._method = method
        self._clock = clock

    # ------------------------------------------------------------------ saved hold

    def saved(self) -> FleetHold | None:
        """The hold in the state file, if any (an unreadable file counts as none, loudly)."""
        try:
            record = json.loads(self._file.read_text(encoding="utf-8"))
            return FleetHold.from_json(record)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            _LOGGER.warning("ignoring an unreadable Fleet API hold file %s", self._file)
            return None

    def _save(self, hold: FleetHold) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".fleet-hold-", dir=self._file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(hold.to_json(), handle)
            os.replace(tmp, self._file)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------ the site

    def _read(self) -> int | str:
        info = self._cloud.site_info()
        key = "backup_reserve_percent" if self._method == "reserve" else "default_real_mode"
        value = info.get(key)
        if (
            self._method == "reserve"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            return int(value)
        if self._method == "mode" and isinstance(value, str):
            return value
        raise CloudCommandRefused(f"site_info has no {key} to save before a hold")

    def _write(self, value: int | str) -> None:
        if self._method == "reserve":
            self._cloud.set_backup_reserve(int(value))
        else:
            self._cloud.set_operation_mode(str(value))

    def _write_checked(self, value: int | str) -> None:
        self._write(value)
        now_value = self._read()
        if now_value != value:
            what = "reserve" if self._method == "reserve" else "mode"
            unit = " %" if self._method == "reserve" else ""
            raise CloudCommandRefused(
                f"asked for {what} {value}{unit}, the site reports {now_value}{unit}"
                + (
                    " (recent firmware caps a cloud reserve at 80 %)"
                    if value == HOLD_RESERVE
                    else ""
                )
            )

    # ------------------------------------------------------------------ decide()'s view

    def current(self, now: datetime | None = None) -> BackupEvent | None:
        """The hold ``decide()`` takes as the gateway's event; an ended one is restored first
        (ended by ``now``, the caller's clock, else this actuator's)."""
        hold = self.saved()
        if hold is None:
            return None
        if hold.end <= (now or self._clock()):
            self._restore(hold, "its end has passed")
            return None
        return hold.event

    def apply(self, actions: Sequence[Action]) -> list[str]:
        """Carry out ``decide()``'s actions; one line per change, for logs and results.

        A Cancel directly followed by a Schedule (decide() cancels before every schedule)
        moves the end of a running hold without restoring in between.
        """
        lines: list[str] = []
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Cancel):
                if pending and isinstance(pending[0], Schedule) and self.saved() is not None:
                    continue  # the Schedule that follows keeps the hold and moves its end
                hold = self.saved()
                if hold is not None:
                    lines.append(self._restore(hold, action.reason))
            elif isinstance(action, Schedule):
                lines.append(self._hold(action))
        return lines

    def _hold(self, action: Schedule) -> str:
        hold = self.saved()
        target: int | str = HOLD_RESERVE if self._method == "reserve" else HOLD_MODE
        if hold is None:
            hold = FleetHold(action.start, action.end, self._method, self._read())
            self._save(hold)  # before the write: a crash after it still knows what to restore
            try:
                self._write_checked(target)
            except CloudError:
                self._restore(hold, "the hold did not take")
                raise
            line = f"Fleet API hold until {action.end.isoformat()}: {self._describe(target)}"
        else:
            hold = FleetHold(hold.start, action.end, hold.method, hold.restore)
            self._save(hold)
            line = f"Fleet API hold now until {action.end.isoformat()}"
        _LOGGER.info("%s (%s)", line, action.reason)
        return line

    def _restore(self, hold: FleetHold, reason: str) -> str:
        if hold.method != self._method:
            _LOGGER.warning("restoring a hold made with method %s", hold.method)
        previous = self._method
        self._method = hold.method
        try:
            self._write_checked(hold.restore)
        finally:
            self._method = previous
        with contextlib.suppress(FileNotFoundError):
            self._file.unlink()
        line = f"Fleet API hold ended, {self._describe(hold.restore, hold.method)} restored"
        _LOGGER.info("%s (%s)", line, reason)
        return line

    def _describe(self, value: int | str, method: str | None = None) -> str:
        if (method or self._method) == "reserve":
            return f"backup reserve {value} %"
        return f"operation mode {value}"

    def close(self) -> None:
        """Close the cloud client's connections."""
        self._cloud.close()


def open_cloud_channel(
    settings: CloudSettings, state_dir: Path, din: str | None = None
) -> CloudChannel:
    """The cloud road for the dispatcher: the ``device_command`` relay of the ``[cloud]``
    account, its tokens in ``state_dir``, for the gateway ``din`` when given (the site must
    have it). Nothing is sent until the first ``send``."""
    return CloudChannel(TeslaCloud.from_settings(settings, state_dir), din=din)


def open_fleet_actuator(
    settings: CloudSettings, state_dir: Path, method: str = "mode"
) -> FleetActuator:
    """The Fleet API actuator of the ``[cloud]`` account, its hold saved in ``state_dir``."""
    return FleetActuator(
        TeslaCloud.from_settings(settings, state_dir), state_dir / FLEET_HOLD_FILE, method=method
    )


class FleetChannel:
    """The Fleet API road as a :class:`SignedChannel`, so the dispatcher's loop runs unchanged.

    The dispatcher signs its Max Backup calls as for the gateway (any key will do: nothing
    here is paired); each is checked like a relay checks it (signed by the key it names, for
    this gateway, not expired) and carried out by a :class:`FleetActuator`, and the answer is
    the one a gateway would give: the hold as the backup event of a list, an acknowledgement
    of a schedule or a cancel. A cancel is held back until the next call: a schedule (the
    dispatcher cancels before every schedule) then moves the hold's end without restoring
    in between; a list (the dispatcher reads back after acting) restores first.
    """

    name = "fleet"

    def __init__(
        self,
        actuator: FleetActuator,
        din: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._actuator = actuator
        self._din = din
        self._clock = clock
        self._cancel_pending = False

    def _finish_cancel(self) -> None:
        hold = self._actuator.saved()
        if self._cancel_pending and hold is not None:
            self._actuator.apply([Cancel(hold.event, "cancelled by the dispatcher")])
        self._cancel_pending = False

    def send(self, routable: bytes, *, timeout: float) -> bytes:
        """The gateway-like answer to one signed Max Backup call, acted on through the cloud."""
        try:
            request = responder.inspect_request(routable, self._din, self._clock())
        except TedapiFault as fault:
            return responder.fault_reply(fault.fault)
        uuid = request.request_uuid
        if request.kind is Kind.LIST:
            self._finish_cancel()
            # The dispatcher's own clock, as it signed: its hold ends when it says so.
            signed_at = datetime.fromtimestamp(request.expires_at - EXPIRES_AFTER, UTC)
            event = self._actuator.current(signed_at)
            return responder.backup_events_reply(self._din, event, uuid)
        if request.kind is Kind.CANCEL:
            self._cancel_pending = self._actuator.saved() is not None
            return responder.acknowledgement_reply(self._din, Kind.CANCEL, uuid)
        assert request.event is not None  # a schedule always carries its event
        wanted = Schedule(request.event.start, request.event.end, "scheduled by the dispatcher")
        hold = self._actuator.saved()
        if self._cancel_pending and hold is not None:
            self._actuator.apply([Cancel(hold.event, "moved by the dispatcher"), wanted])
        else:
            self._actuator.apply([wanted])
        self._cancel_pending = False
        return responder.acknowledgement_reply(self._din, Kind.SCHEDULE, uuid)

    def close(self) -> None:
        """Carry out a cancel still held back, then close the cloud client."""
        try:
            self._finish_cancel()
        except CloudError as exc:
            _LOGGER.warning("could not restore after a cancel: %s", exc)
        self._actuator.close()


def open_fleet_channel(settings: CloudSettings, state_dir: Path, din: str) -> FleetChannel:
    """The Fleet API road for the dispatcher (method ``cloud.fleet_method``)."""
    return FleetChannel(open_fleet_actuator(settings, state_dir, settings.fleet_method), din)
