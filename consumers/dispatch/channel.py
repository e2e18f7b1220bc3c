"""How a signed TEDAPI message reaches the gateway: the one seam between deciding and acting.

The dispatcher builds and signs its messages itself (:mod:`powerwall_bus.shared.tedapi`);
what differs between setups is only the road the bytes travel:

- over the LAN, through the poller (the only process that talks to the gateway): the
  message goes on the bus as a command with ``reply_to``, the poller posts it to
  ``/tedapi/v1r`` between its reads and returns the gateway's answer;
- through Tesla's cloud, with the Owner API ``device_command`` relay.

Each road is a :class:`SignedChannel`; the dispatcher, ``pwbus pair`` and the tests use
only this protocol, so a road can be added without touching them.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["SignedChannel"]


class SignedChannel(Protocol):
    """Carries one signed ``RoutableMessage`` to the gateway and brings its answer back."""

    #: A short name for logs and ``dispatch.result`` messages ("lan", "cloud").
    name: str

    def send(self, routable: bytes, *, timeout: float) -> bytes:
        """The gateway's answer (a serialized ``RoutableMessage``) to ``routable``.

        Raises a :class:`~powerwall_bus.shared.errors.PwbusError` subclass when the answer
        does not come: the road is down, the poller refused it, the time ran out. A gateway
        that answers with a fault is not an error here: the answer is returned, and
        :func:`powerwall_bus.shared.tedapi.commands.parse_response` reads the fault.
        """
        ...

    def close(self) -> None:
        """Release the road's connections."""
        ...
