"""``pwbus facade``: a read-only gateway look-alike served from the bus.

Home Assistant's Powerwall integration (``tesla-powerwall``), pyPowerwall in local mode and
any script written for the gateway can be pointed at it instead of the gateway: it answers
the gateway's login, cookies, 403 bodies and every GET the poller publishes, with the
gateway's own bodies, and never talks to the gateway. Writes are refused as the gateway
refuses a customer's. Modules: :mod:`.sessions` (its own login), :mod:`.state` (the latest
body of every path, by the shared acceptance, follow and order rules), :mod:`.health`,
:mod:`.app` (the routes), :mod:`.main` (TLS, the bus, the server) and :mod:`.command`.
"""
