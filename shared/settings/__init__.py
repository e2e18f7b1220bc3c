"""Typed settings, read in one place: command-line flags over environment over a config file.

Every option is declared once, as a dataclass field carrying its dotted key
(``gateway.host``), the environment names that set it and a one-line help text. Each
entry point builds one settings object from the sections it needs and passes it down;
nothing else in the project reads ``os.environ``.

Compatibility, so users of the two systems we replace move over without rewriting config:

* the pyPowerwall proxy's environment names where they mean the same thing
  (``PW_HOST`` incl. ``host:port``, ``PW_PASSWORD``, ``PW_EMAIL``, ``PW_TIMEZONE``,
  ``PW_TIMEOUT``, ``PW_DEBUG``, ``PW_AUTH_MODE``, ``PW_AUTH_PATH``, ``PW_CACHE_FILE``, ...);
* the Tesla-API ``credentials.json`` layout (``gateway.host`` with its ``https://`` scheme,
  ``gateway.password``, ``amqp.host/username/password``) as a config file.

A bad or missing value raises :class:`~shared.errors.ConfigError` whose one-line message
names the key, where the value came from and what is wrong. Secrets never appear in
``repr()`` or in error messages.

The package is split by job: :mod:`.fields` (how an option is declared and checked),
:mod:`.sections` (every section, declared once), :mod:`.loader` (the three layers) and
:mod:`.describe` (effective values, the option table, the example file, secrets). This
module is the one import for everybody else.
"""

from powerwall_bus.shared.settings.describe import (
    describe,
    example_config,
    option_table,
    secret_values,
)
from powerwall_bus.shared.settings.loader import Sources, load, read_config_file
from powerwall_bus.shared.settings.sections import (
    SECTIONS,
    AmqpSettings,
    CloudSettings,
    DispatchSettings,
    DisplaySettings,
    FacadeSettings,
    GatewaySettings,
    GuiSettings,
    HatSettings,
    LogSettings,
    MysqlSettings,
    OctopusSettings,
    PollerSettings,
    ProxySettings,
    SimulatorSettings,
    WriterSettings,
    default_state_dir,
)

__all__ = [
    "SECTIONS",
    "AmqpSettings",
    "CloudSettings",
    "DispatchSettings",
    "DisplaySettings",
    "FacadeSettings",
    "GatewaySettings",
    "GuiSettings",
    "HatSettings",
    "LogSettings",
    "MysqlSettings",
    "OctopusSettings",
    "PollerSettings",
    "ProxySettings",
    "SimulatorSettings",
    "Sources",
    "WriterSettings",
    "default_state_dir",
    "describe",
    "example_config",
    "load",
    "option_table",
    "read_config_file",
    "secret_values",
]
