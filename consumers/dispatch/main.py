"""``pwbus dispatch``: the thin shell around :func:`~.decide.decide`.

The plan comes from the bus (``octopus.<account>.plan``, the newest one kept); the gateway's
DIN from the setting or from the one poller's status. On each new plan, every
``dispatch.interval`` seconds and when a decision says it can change by itself
(``wake_at``), one cycle runs:

1. read the gateway's backup events (a signed LIST through the :class:`SignedChannel`);
2. :func:`decide` from the plan and **that answer** (never from a belief about the
   gateway, so a restart never schedules twice);
3. send the actions in order, a cancel before every schedule, a second apart (the gateway
   needs the cancel to land first), stopping at the first that does not go through;
4. read the events back and publish a ``dispatch.<DIN>.result``.

What the decisions remember (our own hold, to tell it from one set in the Tesla app) is
kept in the state folder, so a restart keeps knowing its own hold. One log line per change
of decision or trouble; the private key is read once and never logged (only the public
key's fingerprint). ``--dry-run`` decides and prints, sends nothing: no command, not even a
LIST (the gateway is taken to hold no Max Backup), and publishes nothing. SIGTERM ends the
cycle in progress (a command already sent gets its answer) and exits 0.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

import pika
import pika.exceptions
from cryptography.hazmat.primitives.asymmetric import rsa

from powerwall_bus.consumers.dispatch.channel import SignedChannel
from powerwall_bus.consumers.dispatch.command import CHANNELS, DispatchConfig
from powerwall_bus.consumers.dispatch.decide import Action, Cancel, Decision, Memory, decide
from powerwall_bus.consumers.dispatch.dryrun import decision_lines
from powerwall_bus.consumers.dispatch.lan import APP_ID
from powerwall_bus.consumers.dispatch.result import Done, Report, result_message
from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.contract import (
    ANY_GATEWAY,
    OCTOPUS_PLAN,
    POLLER_STATUS,
    UNKNOWN_GATEWAY,
    routing_key,
)
from powerwall_bus.shared.errors import (
    ConfigError,
    MalformedMessage,
    PwbusError,
    RelayRefused,
    TedapiError,
    TedapiKeyError,
)
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.messages import OutgoingMessage, RunSequence
from powerwall_bus.shared.octopus.message import PlanMessage, parse_plan_message
from powerwall_bus.shared.publishing import message_properties
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.tedapi.commands import (
    Acknowledged,
    BackupEvents,
    Kind,
    build_request,
    parse_response,
)
from powerwall_bus.shared.tedapi.keys import fingerprint, load_private_key, public_der
from powerwall_bus.shared.topology import declare_exchange

_LOGGER = logging.getLogger(__name__)

#: Between two actions of one decision (the gateway needs the cancel in before a schedule).
ACTION_GAP = 1.0
_RESULTS_HELD = 50


def _write(lines: list[str]) -> None:
    """The dry run's output: stdout, flushed per decision."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


class ResultPublisher:
    """Publishes ``dispatch.result`` messages with confirms from a thread of its own; while
    the broker is away it holds the newest :data:`_RESULTS_HELD`."""

    def __init__(self, settings: AmqpSettings, stop: threading.Event) -> None:
        self._settings = settings
        self._stop = stop
        self._queue: collections.deque[OutgoingMessage] = collections.deque(maxlen=_RESULTS_HELD)
        self._ready = threading.Condition()
        self._connection: pika.BlockingConnection | None = None
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None
        self._link = BrokerLink(
            settings,
            f"{APP_ID}-results",
            stop,
            backoff=Backoff(first=1.0, cap=30.0, jitter=0.5),
            logger=_LOGGER,
        )
        self.published = 0

    def put(self, message: OutgoingMessage) -> None:
        with self._ready:
            self._queue.append(message)
            self._ready.notify_all()

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def run(self) -> None:
        self._link.run(self._open, self._serve)

    def _open(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        channel.confirm_delivery()
        self._connection, self._channel = connection, channel

    def _serve(self) -> None:
        assert self._connection is not None and self._channel is not None
        while not self._stop.is_set() or self._queue:
            with self._ready:
                if not self._queue:
                    self._ready.wait(0.2)
                message = self._queue[0] if self._queue else None
            if message is None:
                self._connection.process_data_events(time_limit=0)
                continue
            self._channel.basic_publish(
                exchange=self._settings.exchange,
                routing_key=message.routing_key,
                body=message.body,
                properties=message_properties(
                    message, app_id=APP_ID, user_id=self._settings.username
                ),
            )
            with self._ready:
                if self._queue and self._queue[0] is message:
                    self._queue.popleft()
            self.published += 1


class Dispatcher:
    """The running dispatcher; ``start``/``stop`` make it usable in-process (tests)."""

    def __init__(
        self,
        config: DispatchConfig,
        *,
        clock: Callable[[], float] = time.time,
        wall: Callable[[], float] = time.time,
        out: Callable[[list[str]], None] = _write,
    ) -> None:
        self.config = config
        self.settings = config.dispatch
        self._clock = clock  # decisions: the plan's and the gateway's time
        self._wall = wall  # signatures: what the gateway checks expiry against
        self._out = out
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._plan: PlanMessage | None = None
        self._plan_changed = False
        self._din: str | None = self.settings.gateway or None
        self._dins: set[str] = set()
        self._key: rsa.RSAPrivateKey | None = None
        if not self.settings.dry_run:
            try:
                self._key = load_private_key(config.key_file)
            except TedapiKeyError as exc:
                raise ConfigError(
                    "dispatch.key_file", f"{exc} (make one with pwbus pair)"
                ) from None
        self._channel: SignedChannel | None = None
        self._memory = Memory()
        self._sequence = RunSequence()
        self._results = (
            None if self.settings.dry_run else ResultPublisher(config.amqp, self.stop_event)
        )
        account = config.account or ANY_GATEWAY
        bindings = [routing_key(OCTOPUS_PLAN, account)]
        if self._din is None:
            bindings.append(routing_key(POLLER_STATUS, ANY_GATEWAY))
        self._subscriber = BusSubscriber(
            config.amqp,
            bindings,
            self._on_message,
            name="dispatch",
            resync=self._din is None,
            on_fatal=lambda exc: self._wake.set(),  # run_dispatch sees it in ``failed``
        )
        self._threads: list[threading.Thread] = []
        self._last_summary: str | None = None
        self._last_after: BackupEvent | None = None
        self._last_error: str | None = None
        self.cycles = 0
        self.results: list[Report] = []  # the latest reports (tests, --dry-run)

    # ------------------------------------------------------------------ bus input

    def _on_message(self, key: str, properties: pika.BasicProperties, body: bytes) -> None:
        # Anyone may publish: take statuses only from the poller's broker user and plans only
        # from pwbus octopus's (RabbitMQ vouches for user_id).
        poller = self.config.amqp.trusted_publisher
        if properties.type == POLLER_STATUS and properties.user_id == poller:
            self._on_status(body)
        elif properties.type == OCTOPUS_PLAN and properties.user_id == (
            self.settings.plan_user or poller
        ):
            self._on_plan(body)

    def _on_status(self, body: bytes) -> None:
        try:
            din = json.loads(body)["payload"]["din"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(din, str) or not din or din == UNKNOWN_GATEWAY:
            return
        with self._lock:
            if din in self._dins:
                return
            self._dins.add(din)
            if self._din is None and len(self._dins) == 1:
                self._din = din
                _LOGGER.info("acting on gateway %s (its poller's status)", din)
                self._wake.set()
            elif self._din is not None and din != self._din:
                _LOGGER.warning(
                    "several gateways on the bus (%s): acting on %s; set PWBUS_DISPATCH_GATEWAY",
                    ", ".join(sorted(self._dins)),
                    self._din,
                )

    def _on_plan(self, body: bytes) -> None:
        try:
            plan = parse_plan_message(body)
        except MalformedMessage as exc:
            _LOGGER.debug("ignored an unreadable plan: %s", exc)
            return
        with self._lock:
            old = self._plan
            if old is not None and self.config.account == "" and plan.account != old.account:
                _LOGGER.warning(
                    "plans of several Octopus accounts on the bus: following %s; set "
                    "PWBUS_DISPATCH_ACCOUNT",
                    old.account,
                )
                return
            if old is not None and plan.run == old.run and (plan.seq or 0) <= (old.seq or 0):
                return  # a copy or an older message of the same producer run
            self._plan = plan
            same = old is not None and old.plan == plan.plan and old.state == plan.state
            if not same:
                self._plan_changed = True
                self._wake.set()

    # ------------------------------------------------------------------ the loop

    @property
    def listening(self) -> threading.Event:
        """Set while the plan (and status) subscription is up."""
        return self._subscriber.connected

    @property
    def failed(self) -> BaseException | None:
        """What ended the bus subscription, if anything did."""
        return self._subscriber.error

    def start(self) -> Dispatcher:
        self._subscriber.start()
        if self._results is not None:
            thread = threading.Thread(target=self._results.run, name="dispatch-results")
            thread.start()
            self._threads.append(thread)
        loop = threading.Thread(target=self.run, name="dispatch")
        loop.start()
        self._threads.append(loop)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self._wake.set()
        if self._results is not None:
            self._results.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._subscriber.stop()
        if self._channel is not None:
            self._channel.close()

    def run(self) -> None:
        """Decide until stopped (the calling thread)."""
        if self._key is not None:
            _LOGGER.info(
                "dispatch starting: channel %s, key %s (sha256 of the public key)",
                self.settings.channel,
                fingerprint(public_der(self._key))[:16],
            )
        else:
            _LOGGER.info("dispatch starting: dry run, nothing is sent")
        trigger = "start"
        next_at = self._clock() + self.settings.interval
        while not self.stop_event.is_set():
            with self._lock:
                din, changed = self._din, self._plan_changed
            if din is None or not (changed or self._clock() >= next_at):
                self._wake.wait(min(1.0, max(0.05, next_at - self._clock())))
                self._wake.clear()
                continue
            if changed and trigger != "start":
                trigger = "plan"
            with self._lock:
                self._plan_changed = False
            decision = self.cycle(din, trigger)
            trigger = "timer"
            next_at = self._clock() + self.settings.interval
            if decision is not None and decision.wake_at is not None:
                next_at = min(next_at, decision.wake_at.timestamp() + 0.5)
        _LOGGER.info("dispatch stopped after %d decisions", self.cycles)

    # ------------------------------------------------------------------ one cycle

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def cycle(self, din: str, trigger: str) -> Decision | None:
        """Read, decide, act, read back, report; the decision made (None: none could be)."""
        self.cycles += 1
        with self._lock:
            message = self._plan
        plan = None if message is None else message.plan
        if self.settings.dry_run:
            decision = decide(self._now(), plan, None, self.settings, self._memory)
            self._memory = decision.memory
            self._out(decision_lines(decision, self.settings.zone))
            return decision
        try:
            before = self._read(din)
        except PwbusError as exc:
            unread = Decision((), self._memory, "the gateway could not be read: nothing decided")
            failure = f"cannot read the gateway's Max Backup: {exc}"
            now = self._now()
            channel = self.settings.channel
            self._tell(Report(now, din, channel, trigger, message, None, unread, error=failure))
            return None
        decision = decide(self._now(), plan, before, self.settings, self._memory)
        done = self._act(din, decision.actions)
        error = next((d.detail for d in done if d.outcome in ("refused", "failed")), None)
        if all(d.outcome == "done" for d in done):
            self._memory = decision.memory
            self._save_memory(din)
        after = before
        if done:
            try:
                after = self._read(din)
            except PwbusError as exc:
                error = error or f"cannot read the gateway back: {exc}"
                after = None
        report = Report(
            self._now(),
            din,
            self.settings.channel,
            trigger,
            message,
            before,
            decision,
            tuple(done),
            after,
            error,
        )
        self._tell(report)
        return decision

    def _channel_for(self, din: str) -> SignedChannel:
        if self._channel is None:
            self._channel = CHANNELS[self.settings.channel](self.config, din)
            self._load_memory(din)
        return self._channel

    def _send(self, din: str, kind: Kind, event: BackupEvent | None = None) -> object:
        assert self._key is not None
        request = build_request(kind, din, self._key, self._wall(), event=event)
        answer = self._channel_for(din).send(request, timeout=self.settings.command_timeout)
        return parse_response(answer)

    def _read(self, din: str) -> BackupEvent | None:
        result = self._send(din, Kind.LIST)
        if not isinstance(result, BackupEvents):
            raise TedapiError(f"the gateway answered a list with {type(result).__name__}")
        return result.manual

    def _act(self, din: str, actions: tuple[Action, ...]) -> list[Done]:
        done: list[Done] = []
        for index, action in enumerate(actions):
            if done and (done[-1].outcome != "done" or self.stop_event.is_set()):
                done.extend(
                    Done(a, "not_sent", "an earlier action did not go through")
                    for a in actions[index:]
                )
                break
            if index:
                self.stop_event.wait(ACTION_GAP)
            kind, event = (
                (Kind.CANCEL, None) if isinstance(action, Cancel) else (Kind.SCHEDULE, action.event)
            )
            try:
                result = self._send(din, kind, event)
            except TedapiError as exc:  # the gateway's refusal or fault
                done.append(Done(action, "refused", str(exc)))
                continue
            except PwbusError as exc:  # the road: refused by the poller, no answer, no broker
                outcome = "refused" if isinstance(exc, RelayRefused) else "failed"
                done.append(Done(action, outcome, str(exc)))
                continue
            if result != Acknowledged(kind):
                done.append(Done(action, "refused", f"unexpected answer {result!r}"))
                continue
            done.append(Done(action, "done"))
        return done

    # ------------------------------------------------------------------ telling

    def _trouble(self, error: str) -> None:
        if error != self._last_error:
            _LOGGER.warning("%s", error)
            self._last_error = error

    def _tell(self, report: Report) -> None:
        decision = report.decision
        sent = bool(report.done)
        changed = decision.summary != self._last_summary or report.error != self._last_error
        if report.error is not None:
            self._trouble(report.error)
        else:
            if self._last_error is not None:
                _LOGGER.info("the gateway answers again")
            self._last_error = None
        if sent:
            for done in report.done:
                _LOGGER.info("%s: %s", done.outcome, _action_text(done.action))
        unread = report.error is not None and not sent  # only a failed read errs so
        if (changed or sent) and not unread:
            _LOGGER.info("decided: %s", decision.summary)
        # What the gateway says is news too: a hold ending by itself changes no decision.
        moved = not unread and report.after != self._last_after
        if moved and not (changed or sent):
            _LOGGER.info("the gateway's Max Backup is now %s", _event_text(report.after))
        if changed or sent or moved or report.trigger == "start":
            self.results = [*self.results[-9:], report]
            if self._results is not None:
                self._results.put(result_message(report, self._sequence))
        self._last_summary = decision.summary
        if not unread:
            self._last_after = report.after

    # ------------------------------------------------------------------ memory

    def _load_memory(self, din: str) -> None:
        path = self.config.memory_file(din)
        try:
            self._memory = Memory.from_payload(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return
        except (OSError, ValueError, MalformedMessage) as exc:
            _LOGGER.warning("ignored the saved decision memory %s: %s", path, exc)

    def _save_memory(self, din: str) -> None:
        path = self.config.memory_file(din)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            spare = path.with_suffix(".tmp")
            spare.write_text(json.dumps(self._memory.to_payload()), encoding="utf-8")
            os.replace(spare, path)
        except OSError as exc:
            _LOGGER.warning("cannot save the decision memory %s: %s", path, exc)


def _event_text(event: BackupEvent | None) -> str:
    if event is None:
        return "off"
    return f"on {event.start:%H:%M:%S}-{event.end:%H:%M:%S} UTC"


def _action_text(action: Action) -> str:
    if isinstance(action, Cancel):
        return f"cancel Max Backup {action.event.start:%H:%M:%S}-{action.event.end:%H:%M:%S} UTC"
    return (
        f"schedule Max Backup {action.start:%H:%M:%S}-{action.end:%H:%M:%S} UTC ({action.reason})"
    )


def run_dispatch(config: DispatchConfig) -> int:
    """Run until SIGTERM/SIGINT; exit status 0 after a clean shutdown."""
    dispatcher = Dispatcher(config)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("received %s: shutting down", signal.Signals(signum).name)
        stopping.set()
        dispatcher.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    dispatcher.start()
    while not stopping.wait(1.0):
        if dispatcher.failed is not None:
            break
    dispatcher.stop()
    if isinstance(dispatcher.failed, PwbusError):
        raise dispatcher.failed  # the broker refused our settings: pwbus exits 2
    return 0 if dispatcher.failed is None else 1
