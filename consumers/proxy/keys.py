"""The proxy application's shared objects, under typed keys (aiohttp's ``web.AppKey``).

:func:`consumers.proxy.app.create_app` stores them; handlers and the ``cleanup_ctx`` entries
reach them through ``request.app[KEY]`` / ``app[KEY]``. Typed keys let mypy check every use,
and there is no module-level registry: two applications in one process (tests) share
nothing.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from powerwall_bus.consumers.proxy.render import RenderOptions
from powerwall_bus.consumers.proxy.state import ProxyState, Stats
from powerwall_bus.shared.settings import AmqpSettings, ProxySettings

#: The proxy's settings.
SETTINGS = web.AppKey("settings", ProxySettings)
#: The settings that change what the data routes say (derived from SETTINGS once).
OPTIONS = web.AppKey("options", RenderOptions)
#: The latest message of every kind, fed by the bus subscription.
STATE = web.AppKey("state", ProxyState)
#: The request statistics (/stats, /health).
STATS = web.AppKey("stats", Stats)
#: The broker to subscribe to; absent when the application is fed some other way (tests).
AMQP = web.AppKey("amqp", AmqpSettings)
#: The gateway to serve (``PWBUS_GATEWAY``: a DIN or a poller's name); "" = the only one.
FOLLOW = web.AppKey("follow", str)
#: What /metrics reads at each scrape (the proxy's collector over STATE and STATS).
METRICS = web.AppKey("metrics", CollectorRegistry)
