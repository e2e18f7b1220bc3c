"""powerwall-bus: one gentle poller for the Tesla Powerwall gateway, many consumers on RabbitMQ.

This folder is the top of the installed package ``powerwall_bus`` and its composition root:
the ``pwbus`` command (:mod:`powerwall_bus.cli`) and the stack supervisor
(:mod:`powerwall_bus.stack`). The repository's other folders are installed beneath it
(``powerwall_bus.shared``, ``powerwall_bus.producers``, ``powerwall_bus.consumers``,
``powerwall_bus.simulator``, ``powerwall_bus.schema``), so nothing of ours lands in
site-packages under a generic top-level name. The layers point one way: ``shared`` imports
no component, the components import ``shared``, and only this root imports components.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "powerwall-bus"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"
