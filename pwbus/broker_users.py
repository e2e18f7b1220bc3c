"""``pwbus broker users``: one RabbitMQ user per role, each with least-privilege permissions.

RabbitMQ checks three regular expressions per user and virtual host (``configure``:
declare and delete; ``write``: publish to an exchange, bind a queue as the destination;
``read``: consume from a queue, bind from an exchange), plus, per topic exchange, two on the
routing key (``write``: the key a message is published with; ``read``: the key a queue is
bound with). This module writes them for each role (see :data:`ROLES` and
:func:`role_permissions`), so that on the bus:

* only the **poller** publishes readings and its status (``powerwall.*``, ``MeterStream``),
  answers resync requests (the default exchange) and declares its resync queue and the
  MySQL writer's durable queue;
* the **consumers** (``proxy``, ``display``) read into server-named queues (``amq.gen-*``)
  and may publish ``control.resync`` and nothing else;
* the **writer** owns its durable queue and dead-letter queue (dead letters go through the
  default exchange) and publishes nothing on the exchange;
* a **dispatcher** publishes control commands (``control.*``: the signed commands the
  poller relays to the gateway, and resync requests) and its reports (``dispatch.*``), and
  binds only the Octopus plans and the pollers' statuses; the poller binds exactly the
  signed-command keys (``control.<DIN>.tedapi``) besides the resync requests;
* the **octopus** producer publishes the Octopus plans (``octopus.<account>.plan``) and
  nothing else, and reads nothing (set ``PWBUS_DISPATCH_PLAN_USER=pwbus-octopus`` for the
  dispatcher, which takes plans only from that user).

Three output forms: the ``rabbitmqctl`` commands as a shell script (the default), a
RabbitMQ definitions file (``--format definitions``, loaded at boot by ``load_definitions``;
it holds salted SHA-256 password hashes, never a password), or (``--apply``) the commands
run here. Passwords come from ``PWBUS_BROKER_<ROLE>_PASSWORD`` or a terminal prompt, never
from a flag; ``--apply`` hands them to ``rabbitmqctl`` on its standard input, so they show in
no process list and in no error message.

Light on purpose: no pika, nothing but the standard library and the settings.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from powerwall_bus.shared.command import Command, exchange_flag, password_from_env_or_prompt
from powerwall_bus.shared.errors import ConfigError, PwbusError
from powerwall_bus.shared.settings import AmqpSettings, Sources, WriterSettings, load
from powerwall_bus.shared.topology import METER_STREAM, RESYNC

#: Role -> default user name. ``display`` is a consumer like the proxy (LED, GUI displays).
ROLES: dict[str, str] = {
    "poller": "pwbus-poller",
    "proxy": "pwbus-proxy",
    "display": "pwbus-display",
    "writer": "pwbus-writer",
    "dispatcher": "pwbus-dispatcher",
    "octopus": "pwbus-octopus",
}
#: The roles made when ``--roles`` is not given.
DEFAULT_ROLES: tuple[str, ...] = ("poller", "proxy", "writer", "dispatcher", "octopus")
FORMATS = ("commands", "definitions")
#: producers/poller/publisher.RESYNC_QUEUE_PREFIX (checked equal by a test; that module
#: imports pika).
POLLER_QUEUE_PREFIX = "pwbus.poller."
#: RabbitMQ's name for the default exchange in permission checks.
DEFAULT_EXCHANGE = "amq.default"
SERVER_NAMED = r"amq\.gen-.*"
NOTHING = "^$"
_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def password_env(role: str) -> str:
    """The environment variable holding a role's password."""
    return f"PWBUS_BROKER_{role.upper()}_PASSWORD"


@dataclass(frozen=True)
class Permissions:
    """One user's permissions on the virtual host and its topic permissions on the exchange."""

    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


def _any(*names: str) -> str:
    """``^(a|b|c)$`` (``^a$`` for one): the names are regular expressions already."""
    return f"^{names[0]}$" if len(names) == 1 else f"^({'|'.join(names)})$"


def role_permissions(
    role: str, exchange: str, writer_queue: str = "pwbus.mysql", dead_letter_queue: str = ""
) -> Permissions:
    """What ``role`` may do, for the exchange and the writer's queues of the settings.

    Every role declares the exchange on connect (``configure`` on it). Binding a queue needs
    ``write`` on the queue and ``read`` on the exchange, plus the binding key in the topic
    ``read``. Declaring a queue whose dead letters go to the default exchange (the writer's)
    needs ``read`` on the queue and ``write`` on ``amq.default``. Publishing needs ``write``
    on the exchange and the routing key in the topic ``write``.
    """
    ex = re.escape(exchange)
    queue = re.escape(writer_queue)
    dead = re.escape(dead_letter_queue or f"{writer_queue}.dead")
    own = re.escape(POLLER_QUEUE_PREFIX) + ".*"
    readings = (r"powerwall\..*", re.escape(METER_STREAM))
    commands = r"control\.[^.]+\.tedapi"  # shared/control.command_key: one gateway's commands
    if role == "poller":
        return Permissions(
            configure=_any(ex, own, queue, dead),
            write=_any(ex, re.escape(DEFAULT_EXCHANGE), own, queue),
            read=_any(ex, own, queue),
            topic_write=_any(*readings),
            topic_read=_any(re.escape(RESYNC), commands, *readings),
        )
    if role in ("proxy", "display"):
        return Permissions(
            configure=_any(ex, SERVER_NAMED),
            write=_any(ex, SERVER_NAMED),
            read=_any(ex, SERVER_NAMED),
            topic_write=_any(re.escape(RESYNC)),
            topic_read=_any(*readings),
        )
    if role == "writer":
        return Permissions(
            configure=_any(ex, queue, dead),
            write=_any(re.escape(DEFAULT_EXCHANGE), queue, dead),
            read=_any(ex, queue, dead),
            topic_write=NOTHING,
            topic_read=_any(*readings),
        )
    if role == "dispatcher":
        return Permissions(
            configure=_any(ex, SERVER_NAMED),
            write=_any(ex, SERVER_NAMED),
            read=_any(ex, SERVER_NAMED),
            topic_write=_any(r"control\..*", r"dispatch\..*"),
            topic_read=_any(r"octopus\.[^.]+\.plan", r"powerwall\.[^.]+\.poller\.status"),
        )
    if role == "octopus":
        return Permissions(
            configure=_any(ex),
            write=_any(ex),
            read=NOTHING,
            topic_write=_any(r"octopus\.[^.]+\.plan"),
            topic_read=NOTHING,
        )
    raise ConfigError("roles", f"unknown role {role!r}; known: {', '.join(ROLES)}")


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Account:
    """One role's broker user."""

    role: str
    user: str
    password: str = field(repr=False, metadata={"secret": True})


@dataclass(frozen=True)
class BrokerUsersCommand:
    """``pwbus broker users``: which users, for which exchange, printed how or applied."""

    amqp: AmqpSettings
    writer: WriterSettings
    accounts: tuple[Account, ...]
    apply: bool = False
    format: str = "commands"
    output: str | None = None

    def permissions(self, role: str) -> Permissions:
        return role_permissions(
            role, self.amqp.exchange, self.writer.queue, self.writer.dead_letter_queue
        )


def commands(request: BrokerUsersCommand) -> list[list[str]]:
    """The ``rabbitmqctl`` arguments granting each account its permissions (no add_user)."""
    vhost = request.amqp.vhost
    found = []
    for account in request.accounts:
        p = request.permissions(account.role)
        found.append(["set_permissions", "-p", vhost, account.user, p.configure, p.write, p.read])
        found.append(
            [
                "set_topic_permissions",
                "-p",
                vhost,
                account.user,
                request.amqp.exchange,
                p.topic_write,
                p.topic_read,
            ]
        )
    return found


def script(request: BrokerUsersCommand) -> str:
    """The shell script: each user created (or its password changed), then its permissions."""
    lines = [
        "#!/bin/sh",
        f"# pwbus broker users: virtual host {request.amqp.vhost!r},"
        f" exchange {request.amqp.exchange!r}",
        "set -eu",
    ]
    for account in request.accounts:
        user, password = shlex.quote(account.user), shlex.quote(account.password)
        lines += [
            f"# {account.role}",
            f"rabbitmqctl add_user {user} {password} 2>/dev/null ||",
            f"  rabbitmqctl change_password {user} {password}",
        ]
    lines += [shlex.join(["rabbitmqctl", *args]) for args in commands(request)]
    return "\n".join(lines) + "\n"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def definitions(request: BrokerUsersCommand) -> dict[str, object]:
    """A RabbitMQ definitions document: the virtual host, the exchange, the users (password
    hashes) and their permissions; RabbitMQ imports it at boot (``load_definitions``)."""
    vhost, exchange = request.amqp.vhost, request.amqp.exchange
    users, permissions, topic_permissions = [], [], []
    for account in request.accounts:
        p = request.permissions(account.role)
        users.append(
            {
                "name": account.user,
                "password_hash": password_hash(account.password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        permissions.append(
            {
                "user": account.user,
                "vhost": vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
        )
        topic_permissions.append(
            {
                "user": account.user,
                "vhost": vhost,
                "exchange": exchange,
                "write": p.topic_write,
                "read": p.topic_read,
            }
        )
    return {
        "vhosts": [{"name": vhost}],
        "users": users,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "exchanges": [
            {
                "name": exchange,
                "vhost": vhost,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
    }


Runner = Callable[[list[str], str | None], subprocess.CompletedProcess[str]]


def _rabbitmqctl(args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def _checked(
    run: Runner, args: list[str], stdin: str | None, secret: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    """Run one command; a failure raises one line naming it (never a password)."""
    shown = shlex.join(["rabbitmqctl", *args])
    try:
        done = run(args, stdin)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PwbusError(f"{shown}: {type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout or "").split())[:300]
        for text in secret:
            reason = reason.replace(text, "***")
        raise PwbusError(f"{shown} failed (exit {done.returncode}): {reason}")
    return done


def apply(request: BrokerUsersCommand, run: Runner = _rabbitmqctl) -> int:
    """Create the users (or change their passwords) and set their permissions; 0.

    The passwords go to ``rabbitmqctl`` on its standard input, not on its command line.
    """
    secret = [a.password for a in request.accounts]
    listed = _checked(run, ["list_users", "--quiet", "--formatter", "json"], None, secret)
    try:
        existing = {entry["user"] for entry in json.loads(listed.stdout or "[]")}
    except (ValueError, TypeError, KeyError):
        raise PwbusError("rabbitmqctl list_users: unexpected output") from None
    for account in request.accounts:
        verb = "change_password" if account.user in existing else "add_user"
        _checked(run, [verb, account.user], account.password + "\n", secret)
    for args in commands(request):
        _checked(run, args, None, secret)
    names = ", ".join(f"{a.user!r} ({a.role})" for a in request.accounts)
    sys.stdout.write(
        f"broker users ready on virtual host {request.amqp.vhost!r}, "
        f"exchange {request.amqp.exchange!r}: {names}\n"
    )
    return 0


def run_users(request: BrokerUsersCommand) -> int:
    """``pwbus broker users``: print the script or the definitions, or apply them."""
    if request.apply:
        return apply(request)
    if request.format == "definitions":
        text = json.dumps(definitions(request), indent=2) + "\n"
    else:
        text = script(request)
    if request.output is None:
        sys.stdout.write(text)
        return 0
    try:
        # Readable by the broker's own user in its container (hashes only, no password).
        descriptor = os.open(request.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise ConfigError("output", f"cannot write {request.output}: {exc.strerror}") from None
    return 0


# --------------------------------------------------------------------------- arguments


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION", required=True)
    users = actions.add_parser(
        "users",
        help="print (or --apply) the rabbitmqctl commands creating one user per role",
        description="Each role's password comes from $PWBUS_BROKER_<ROLE>_PASSWORD "
        "(e.g. PWBUS_BROKER_POLLER_PASSWORD), or is asked for at the terminal (never as a "
        "flag). Roles: " + ", ".join(ROLES) + ".",
    )
    users.add_argument(
        "--roles",
        default=",".join(DEFAULT_ROLES),
        metavar="LIST",
        help=f"comma-separated roles ({','.join(DEFAULT_ROLES)})",
    )
    for role, name in ROLES.items():
        users.add_argument(
            f"--{role}-user", dest=f"user_{role}", default=name, metavar="NAME", help=f"({name})"
        )
    exchange_flag(users)
    users.add_argument(
        "--vhost", dest="amqp.vhost", metavar="VHOST", help="virtual host (the URL's, /)"
    )
    users.add_argument(
        "--queue", dest="writer.queue", metavar="NAME", help="the writer's queue (pwbus.mysql)"
    )
    users.add_argument(
        "--format", default="commands", choices=FORMATS, help="what to print (commands)"
    )
    users.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    users.add_argument(
        "--apply", action="store_true", help="run the commands here (rabbitmqctl, as its admin)"
    )


def _password(sources: Sources, role: str, ask: Callable[[str], str] = getpass.getpass) -> str:
    return password_from_env_or_prompt(
        sources, f"broker.{role}_password", password_env(role), role, ask
    )


def _load(sources: Sources, args: argparse.Namespace) -> BrokerUsersCommand:
    roles = [r.strip() for r in str(args.roles).split(",") if r.strip()]
    if not roles:
        raise ConfigError("roles", "name at least one role")
    for role in roles:
        if role not in ROLES:
            raise ConfigError("roles", f"unknown role {role!r}; known: {', '.join(ROLES)}")
    users = [getattr(args, f"user_{role}") for role in roles]
    for role, user in zip(roles, users, strict=True):
        if not _USER.match(user):
            raise ConfigError(f"{role}-user", "use 1 to 64 letters, digits or . _ @ -")
    if len(set(users)) != len(users) or len(set(roles)) != len(roles):
        raise ConfigError("roles", "each role needs a user of its own (and once)")
    if args.apply and args.output:
        raise ConfigError("output", "--apply prints no commands to write")
    accounts = tuple(
        Account(role, user, _password(sources, role))
        for role, user in zip(roles, users, strict=True)
    )
    return BrokerUsersCommand(
        amqp=load(AmqpSettings, "amqp", sources),
        writer=load(WriterSettings, "writer", sources),
        accounts=accounts,
        apply=bool(args.apply),
        format=args.format,
        output=args.output,
    )


BROKER = Command(
    name="broker",
    help="the RabbitMQ broker: users (one per role, least privilege)",
    add_arguments=_arguments,
    load=_load,
    run=run_users,
)
