"""The contract in one table: every gateway endpoint and every message kind, declared once.

Which gateway paths exist, what kind of message a reading becomes, its routing key, how often
the poller reads it, whether the proxy answers it at the same path and which JSON Schema
checks it: all of that used to be written out in six places (topology, schemas, settings,
the poller's schedule, the writer's bindings, the proxy's allow list and its OpenAPI
document), and the copies had started to disagree. Everything below is the single source;
the poller's schedule, ``DEFAULT_SLOW_ENDPOINTS``, the schema lookup, the writer's bindings,
the proxy's pass-through routes and ``/openapi.json`` are derived from it, and
``tests/test_contract.py`` proves the proxy and its document agree with it.

Routing keys come from :func:`routing_key` and nowhere else, and are read back only by its
inverses :func:`kind_of`, :func:`gateway_of` and :func:`account_of`: the formats
``powerwall.<gateway>.<kind>`` and ``octopus.<account>.<rest>`` live in those functions.

The Octopus plan (``octopus.plan``) is about an Octopus account, not a gateway, so it is not
under ``powerwall.#``: consumers bound there (the writer, the proxy, the displays) take the
second word for a gateway. Its key is scoped by the account instead,
``octopus.<account>.plan``: one bus may carry two homes, and a dispatcher binds exactly its
own account's plan (``octopus.*.plan`` is every account's).

This module imports nothing of the project: settings, messages, schemas and every component
may import it without a cycle.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# --------------------------------------------------------------------------- routing keys

#: Kind names code refers to (each is declared in :data:`KINDS`).
METER_STREAM = "MeterStream"
POLLER_STATUS = "poller.status"
RESYNC = "control.resync"
OCTOPUS_PLAN = "octopus.plan"
#: A signed TEDAPI command for one gateway's poller to relay (``control.<DIN>.tedapi``), the
#: poller's answer to it (sent to the command's ``reply_to``), and the dispatcher's report.
CONTROL_TEDAPI = "control.tedapi"
CONTROL_TEDAPI_REPLY = "control.tedapi.reply"
DISPATCH_RESULT = "dispatch.result"

_OCTOPUS_PREFIX = "octopus."
#: Kinds scoped by an Octopus account instead of a gateway: ``octopus.<account>.<rest>``.
ACCOUNT_KINDS = frozenset({OCTOPUS_PLAN})

#: Kinds about one gateway that are not the poller's readings: ``<first>.<DIN>.<rest>`` for
#: the kind ``<first>.<rest>``. Outside ``powerwall.#``, so the writer, the proxy and the
#: displays never see commands or the dispatcher's reports; a poller binds exactly its own
#: gateway's commands (``control.<DIN>.tedapi``).
GATEWAY_SCOPED_KINDS = frozenset({CONTROL_TEDAPI, CONTROL_TEDAPI_REPLY, DISPATCH_RESULT})

_CONTRACT_PREFIX = "powerwall."
#: Kinds whose routing key is their bare name: Tesla-API's stream keeps Tesla-API's key, and
#: the resync request stays outside ``powerwall.#`` so that binding sees only the contract.
_BARE = frozenset({METER_STREAM, RESYNC})

#: The gateway segment of a binding that takes every gateway (a topic word wildcard).
ANY_GATEWAY = "*"
#: The gateway segment (and envelope ``gateway``) before the poller has learned the DIN.
UNKNOWN_GATEWAY = "unknown"
_WORD = re.compile(r"[^A-Za-z0-9_-]")


def gateway_word(din: str) -> str:
    """The DIN made safe as one topic word: every character outside ``[A-Za-z0-9_-]``
    becomes ``_`` (a ``.`` would split the word, ``*`` and ``#`` are wildcards), and an
    empty DIN is :data:`UNKNOWN_GATEWAY`. Real DINs (``1232100-00-E--TG123456789ABC``)
    come through unchanged."""
    return _WORD.sub("_", din) or UNKNOWN_GATEWAY


def routing_key(kind: str, gateway: str) -> str:
    """The routing key of messages of ``kind`` from the gateway with DIN ``gateway``.

    The one place the key format lives: ``meters`` from ``1232100-00-E--TG123`` ->
    ``powerwall.1232100-00-E--TG123.meters``. ``gateway`` :data:`ANY_GATEWAY` (``*``) and
    ``kind`` ``"#"`` make binding patterns: ``routing_key("#", din)`` is one gateway's
    everything, ``routing_key("meters", ANY_GATEWAY)`` every gateway's meters. The bare kinds
    (``MeterStream``, ``control.resync``) ignore ``gateway``: their keys never change.
    """
    if kind in _BARE:
        return kind
    word = gateway if gateway == ANY_GATEWAY else gateway_word(gateway)
    if kind in ACCOUNT_KINDS:  # the second argument is the Octopus account number
        return f"{_OCTOPUS_PREFIX}{word}.{kind[len(_OCTOPUS_PREFIX) :]}"
    if kind in GATEWAY_SCOPED_KINDS:
        first, _, rest = kind.partition(".")
        return f"{first}.{word}.{rest}"
    return f"{_CONTRACT_PREFIX}{word}.{kind}"


def _split(key: str) -> tuple[str, str] | None:
    """(gateway word, kind) of a contract key; None for any other string."""
    if not key.startswith(_CONTRACT_PREFIX):
        return None
    word, dot, kind = key[len(_CONTRACT_PREFIX) :].partition(".")
    return (word, kind) if word and dot and kind else None


def _split_account(key: str) -> tuple[str, str] | None:
    """(account word, kind) of an account-scoped key; None for any other string."""
    if not key.startswith(_OCTOPUS_PREFIX):
        return None
    word, dot, rest = key[len(_OCTOPUS_PREFIX) :].partition(".")
    kind = _OCTOPUS_PREFIX + rest
    return (word, kind) if word and dot and kind in ACCOUNT_KINDS else None


def _split_scoped(key: str) -> tuple[str, str] | None:
    """(gateway word, kind) of a gateway-scoped key (``control.<DIN>.tedapi``); None for
    any other string (a kind itself included: ``control.tedapi`` has no gateway word)."""
    first, dot, tail = key.partition(".")
    word, dot2, rest = tail.partition(".")
    kind = f"{first}.{rest}"
    if dot and dot2 and word and rest and kind in GATEWAY_SCOPED_KINDS and key != kind:
        return word, kind
    return None


def kind_of(key: str) -> str:
    """The kind of a routing key (a kind, or any other string, is returned unchanged): the
    inverse of :func:`routing_key`, so it changes with it."""
    parts = _split(key) or _split_account(key) or _split_scoped(key)
    return key if parts is None else parts[1]


def account_of(key: str) -> str | None:
    """The account word of an account-scoped key (``octopus.<account>.plan``, or ``*`` in a
    pattern); None for every other key."""
    parts = _split_account(key)
    return None if parts is None else parts[0]


def gateway_of(key: str) -> str | None:
    """The gateway word of a contract routing key (the DIN as :func:`gateway_word` made it,
    or ``*`` in a pattern), also of a gateway-scoped one (``control.<DIN>.tedapi``); None
    for the bare keys and anything else."""
    parts = _split(key) or _split_scoped(key)
    return None if parts is None else parts[0]


# --------------------------------------------------------------------------- message kinds

#: The name of the kind family every other ``/api/...`` endpoint belongs to (``api.<path>``).
API_FAMILY = "api.#"


@dataclass(frozen=True)
class Kind:
    """One kind of message on the exchange."""

    name: str  # also the AMQP ``type`` property and the envelope's ``kind``
    schema: str | None  # the file in schema/messages/; None: the body is not checked
    summary: str
    envelope: bool = True  # False: not our versioned envelope (MeterStream, resync requests)


KINDS: tuple[Kind, ...] = (
    Kind(
        METER_STREAM,
        "meter-stream.json",
        "Tesla-API compatible: timestamp, state_of_energy and the raw meters; no envelope",
        envelope=False,
    ),
    Kind("meters", "meters.json", "the live meters, /api/meters/aggregates"),
    Kind("soe", "soe.json", "the state of energy, raw gateway scale"),
    Kind("grid_status", "grid-status.json", "whether the grid is up"),
    Kind("vitals", "vitals.json", "device vitals: the protobuf in base64 and its decoded view"),
    Kind("api.status", "api-status.json", "the gateway's identity and firmware"),
    Kind("api.system_status", "api-system-status.json", "site energy and battery blocks"),
    Kind(API_FAMILY, "api.json", "every other gateway endpoint: the JSON as received"),
    Kind(POLLER_STATUS, "poller-status.json", "the poller's own health; no gateway endpoint"),
    Kind(RESYNC, None, "a consumer's request for the latest message of every kind", False),
    Kind(
        OCTOPUS_PLAN,
        "octopus-plan.json",
        "an Octopus account's planned dispatches (pwbus octopus); keyed by account",
        envelope=False,  # its own versioned body: an account, no gateway
    ),
    Kind(
        CONTROL_TEDAPI,
        "control-tedapi.json",
        "a signed TEDAPI (v1r) Max Backup command for one gateway's poller to relay, with "
        "reply_to and correlation_id; keyed control.<DIN>.tedapi",
        envelope=False,
    ),
    Kind(
        CONTROL_TEDAPI_REPLY,
        "control-tedapi-reply.json",
        "the poller's answer to a control.tedapi command: the gateway's reply, or why not; "
        "sent to the command's reply_to",
        envelope=False,
    ),
    Kind(
        DISPATCH_RESULT,
        "dispatch-result.json",
        "pwbus dispatch's decision, what it sent and what the gateway says now; keyed "
        "dispatch.<DIN>.result",
        envelope=False,
    ),
)

_KINDS = {kind.name: kind for kind in KINDS}


def _is_api_kind(name: str) -> bool:
    return name.startswith("api.") and len(name) > len("api.")


def kind(name: str) -> Kind | None:
    """The declaration of kind ``name``; any ``api.<path>`` without one of its own belongs
    to the :data:`API_FAMILY`. None for a name the contract does not know."""
    found = _KINDS.get(name)
    if found is None and _is_api_kind(name):
        found = _KINDS[API_FAMILY]
    return found


def schema_file(name: str) -> str | None:
    """The schema file checking messages of kind ``name``; None when there is none."""
    found = kind(name)
    return None if found is None else found.schema


# --------------------------------------------------------------------------- endpoints


class Proxy(enum.Enum):
    """What the pyPowerwall-compatible proxy answers at an endpoint's own path."""

    PASS_THROUGH = "the latest payload read by the poller, as the gateway sent it"
    OWN_ROUTE = "a route of the proxy's own (computed or fixed, as pyPowerwall does)"
    REFUSED = "refused: pyPowerwall's DISABLED list"
    NOT_SERVED = "nothing: 404"


class Encoding(enum.Enum):
    """How the gateway encodes an endpoint's body."""

    JSON = "json"
    PROTOBUF = "protobuf"  # sent base64 in the envelope, with a decoded view


#: The ``PollerSettings`` field of the slow cadence.
SLOW_INTERVAL = "slow_interval"
#: ``Endpoint.poll`` of the endpoints read while listed in ``poller.slow_endpoints``
#: (``PWBUS_POLL_SLOW_ENDPOINTS``), every ``poller.slow_interval`` seconds.
LISTED = "slow_endpoints"


@dataclass(frozen=True)
class Endpoint:
    """One gateway path: what its reading becomes and who reads and serves it.

    ``poll`` names the ``PollerSettings`` field that sets its cadence (the default cadence is
    that field's default), or :data:`LISTED`, or None for a path the poller never reads.
    The order of :data:`ENDPOINTS` is the poller's tie-break order.
    """

    path: str
    kind: str
    poll: str | None = LISTED
    proxy: Proxy = Proxy.PASS_THROUGH
    encoding: Encoding = Encoding.JSON
    note: str = ""  # one line for readers: docs/messages.md and /openapi.json say it

    def routing_key(self, gateway: str) -> str:
        """The routing key its readings from gateway ``gateway`` are published under
        (:data:`ANY_GATEWAY`: the binding pattern of every gateway's)."""
        return routing_key(self.kind, gateway)

    @property
    def schema(self) -> str | None:
        """The schema file its messages are checked with."""
        return schema_file(self.kind)


_OWN = Proxy.OWN_ROUTE

ENDPOINTS: tuple[Endpoint, ...] = (
    # /api/status first: it tells the DIN and firmware every other message needs.
    Endpoint("/api/status", "api.status", poll=SLOW_INTERVAL),
    # The state of energy just before the meters: MeterStream carries the latest of it.
    Endpoint("/api/system_status/soe", "soe", poll="soe_interval", proxy=_OWN),
    Endpoint("/api/meters/aggregates", "meters", poll="meters_interval", proxy=_OWN),
    Endpoint("/api/system_status/grid_status", "grid_status", poll="grid_status_interval"),
    Endpoint("/api/system_status", "api.system_status", poll="system_status_interval"),
    Endpoint("/api/operation", "api.operation", poll="operation_interval"),
    Endpoint(
        "/api/devices/vitals",
        "vitals",
        poll="vitals_interval",
        proxy=Proxy.NOT_SERVED,  # the proxy serves them decoded, on /vitals and friends
        encoding=Encoding.PROTOBUF,
        note="firmware before 23.44 only",
    ),
    Endpoint(
        "/api/solar_powerwall",
        "api.solar_powerwall",
        poll="solar_powerwall_interval",
        note="Powerwall+ only",
    ),
    Endpoint("/api/site_info", "api.site_info"),
    Endpoint("/api/site_info/site_name", "api.site_info.site_name"),
    Endpoint("/api/sitemaster", "api.sitemaster"),
    Endpoint("/api/powerwalls", "api.powerwalls"),
    Endpoint("/api/meters/site", "api.meters.site"),
    Endpoint("/api/meters/solar", "api.meters.solar"),
    Endpoint("/api/meters", "api.meters", note="the meter inventory, not the live meters"),
    Endpoint("/api/meters/readings", "api.meters.readings"),
    Endpoint("/api/networks", "api.networks"),
    Endpoint("/api/system/networks", "api.system.networks"),
    Endpoint("/api/system/update/status", "api.system.update.status"),
    Endpoint("/api/system_status/grid_faults", "api.system_status.grid_faults"),
    Endpoint("/api/site_info/grid_codes", "api.site_info.grid_codes"),
    Endpoint("/api/solars", "api.solars"),
    Endpoint("/api/solars/brands", "api.solars.brands"),
    Endpoint("/api/customer", "api.customer"),
    Endpoint("/api/installer", "api.installer"),
    Endpoint("/api/synchrometer/ct_voltage_references", "api.synchrometer.ct_voltage_references"),
    Endpoint(
        "/api/troubleshooting/problems",
        "api.troubleshooting.problems",
        proxy=_OWN,  # pyPowerwall answers a fixed {"problems": []}; so do we
    ),
    Endpoint("/api/auth/toggle/supported", "api.auth.toggle.supported"),
    # In pyPowerwall's allow list but refused by its DISABLED list: never read, never served.
    Endpoint(
        "/api/customer/registration", "api.customer.registration", poll=None, proxy=Proxy.REFUSED
    ),
)

_ENDPOINTS = {endpoint.path: endpoint for endpoint in ENDPOINTS}


def endpoint(path: str) -> Endpoint:
    """The declaration of a gateway path of the table; KeyError for any other path."""
    return _ENDPOINTS[path]


def _normalise(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


def api_kind(path: str) -> str:
    """The rule for a path without a kind of its own: the path after ``/api/`` with ``/`` as
    ``.`` and any ``.`` as ``_`` (``/api/site_info/site_name`` -> ``api.site_info.site_name``).
    Paths added with ``PWBUS_POLL_SLOW_ENDPOINTS`` get their kind this way."""
    tail = _normalise(path).removeprefix("/api/").strip("/")
    words = [word for word in tail.replace(".", "_").split("/") if word]
    return "api." + ".".join(words)


def kind_for_path(path: str) -> str:
    """The kind of readings from the gateway path ``path`` (a query string is ignored)."""
    declared = _ENDPOINTS.get(_normalise(path))
    return declared.kind if declared is not None else api_kind(path)


def routing_key_for(path: str, gateway: str) -> str:
    """The routing key readings from the gateway path ``path`` of gateway ``gateway`` (its
    DIN) are published under."""
    return routing_key(kind_for_path(path), gateway)


def proxy_paths(use: Proxy) -> frozenset[str]:
    """The gateway paths the proxy answers with ``use`` at the same path."""
    return frozenset(e.path for e in ENDPOINTS if e.proxy is use)


#: The default of ``poller.slow_endpoints`` (PWBUS_POLL_SLOW_ENDPOINTS): every endpoint read at
#: the slow cadence, /api/status included (it is read whatever the list says).
DEFAULT_SLOW_ENDPOINTS: tuple[str, ...] = tuple(
    e.path for e in ENDPOINTS if e.poll in (LISTED, SLOW_INTERVAL)
)
