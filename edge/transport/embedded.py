"""An in-process MQTT broker (amqtt, MQTT 3.1.1) set up from the registry: nothing to install.

The same registry that generates Mosquitto's files gives this broker its logins and ACL, through
two amqtt plugins:
  - `RegistryAuthPlugin`: every client logs in as a registry principal (PBKDF2 hashes, as in
    Mosquitto's password file); no anonymous access; a camera or agency login only with the client
    id bound to it (`edge-<camera>`, `agency-<agency>`), as Mosquitto's dynamic-security plugin does,
    so no login can take over the gate's session.
  - `RegistryTopicPlugin`: per-user publish, subscribe and receive rules from `build_acl`, the
    ACL Mosquitto gets. A subscription is granted only when every topic it could match is
    readable (so an agency's `#` is refused at SUBACK, as by Mosquitto's dynamic-security plugin;
    Mosquitto's acl_file grants it and filters each delivery); each delivery is checked again (RECEIVE).
  - `_RegistryBroker` (amqtt's Broker with these changes, so that it behaves as Mosquitto does):
    a CONNECT is authenticated before any session is touched (amqtt deleted the session of the
    client id given, or took it over, before checking the login: a wrong password with the gate's
    client id dropped the raw reads queued for it); a will is sent only on a topic the login may
    publish to (amqtt sent it unchecked: a camera's will could forge a read on another camera's raw
    topic or an agency's share topic, past the gate); a retained message goes only to a session's
    own subscriptions and only where that login may receive it (amqtt sent, on every connect, every
    retained message matching anyone's subscription: a retained raw read reached every agency);
    what was queued for an offline session is delivered with the retain flag off (amqtt set it,
    so the gate refused as refuse:retained every raw read queued while it was offline); a message
    is delivered at the lower of its publish's QoS and the subscription's, a retained one at the
    lower of its own and the one granted, and only QoS 1 and 2 are queued for an offline session
    (amqtt delivered at the subscription's QoS and queued QoS 0 too: verify-acl's QoS 0 canary
    reached an agency's session at QoS 1 and, unacknowledged, stayed there for its receiver).
  - `_SessionHandler` (amqtt's BrokerProtocolHandler): a QoS 1 or 2 message sent to a client stays
    in its session until acknowledged, and a persistent session that resumes gets it again, DUP
    set (amqtt forgot it when the connection closed, or after 5 s without a PUBACK: the reads an
    agency receiver or the gate had not yet committed were lost, and verify-acl, which takes each
    agency's session and acknowledges nothing, consumed the reads queued for a stopped receiver);
    at most 1000 unacknowledged per session (Mosquitto's max_inflight_messages in broker-config),
    the rest waiting in the session; a PUBREL is always answered PUBCOMP.
What amqtt does not give: MQTT 5 (no shared subscriptions, no reason codes on PUBACK; a refused
publish is silently dropped) and persistence across broker restarts. The demo does not need those;
the Mosquitto tests cover them.

The broker runs on its own asyncio loop in a background thread and listens on a free loopback port,
so the gate and agencies connect with the same paho code as to Mosquitto.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import threading
from dataclasses import dataclass, field

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import OutgoingApplicationMessage
from amqtt.utils import format_client_message, gen_client_id
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from edge.policy.brokerconf import bound_client_id, build_acl, check_password, hash_password
from edge.policy.registry import Registry, Secrets
from edge.transport.mosquitto import free_port
from edge.transport.mqtt import BrokerURL

log = logging.getLogger("edge.embedded")

# The QoS of the PUBLISH a client's message loop is broadcasting (None: not a client's publish).
_publish_qos: contextvars.ContextVar[int | None] = contextvars.ContextVar("publish_qos", default=None)


def topic_matches(pattern: str, topic: str) -> bool:
    """Does the MQTT filter `pattern` match the concrete `topic`?"""
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


def filter_within(requested: str, allowed: str) -> bool:
    """Is every topic the filter `requested` can match also matched by `allowed`?"""
    r, a = requested.split("/"), allowed.split("/")
    for i, part in enumerate(a):
        if part == "#":
            return i <= len(r)
        if i >= len(r):
            return False
        if r[i] == "#":
            return False
        if part == "+":
            continue
        if r[i] == "+" or r[i] != part:
            return False
    return len(r) == len(a)


class RegistryAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        users: dict[str, str] = field(default_factory=dict)  # username -> $7$ PBKDF2 hash
        client_ids: dict[str, str] = field(default_factory=dict)  # username -> its only client id (not the gate)

    async def authenticate(self, *, session) -> bool:
        username = getattr(session, "username", None)
        password = getattr(session, "password", None)
        if not username or password is None:
            return False
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        encoded = self.config.users.get(username)
        if not (encoded and check_password(password, encoded)):
            return False
        bound = self.config.client_ids.get(username)
        if bound is not None and getattr(session, "client_id", None) != bound:
            log.warning("refused %s: client id %r is not its own (%s)", username, getattr(session, "client_id", None), bound)
            return False
        return True


class RegistryTopicPlugin(BaseTopicPlugin):
    @dataclass
    class Config:
        read: dict[str, list[str]] = field(default_factory=dict)
        write: dict[str, list[str]] = field(default_factory=dict)

    async def topic_filtering(self, *, session=None, topic=None, action=None) -> bool:
        user = getattr(session, "username", None)
        if not user or not topic:
            return False
        if action == Action.PUBLISH:
            return any(topic_matches(p, topic) for p in self.config.write.get(user, ()))
        if action == Action.SUBSCRIBE:
            return any(filter_within(topic, p) for p in self.config.read.get(user, ()))
        if action == Action.RECEIVE:
            return any(topic_matches(p, topic) for p in self.config.read.get(user, ()))
        return False  # an action this plugin does not know: refuse


def _missing(cls: type, names) -> list[str]:
    return [f"{n} ({cls.__name__})" for n in names if not callable(getattr(cls, n, None))]


class _SessionHandler(BrokerProtocolHandler):
    """amqtt's BrokerProtocolHandler, keeping what it sends a client at QoS 1 or 2 in the session until
    the client acknowledges it (PUBACK; PUBCOMP), however long that takes and across connections, as
    Mosquitto does: resent, DUP set, when the session resumes (MQTT 3.1.1 4.4). amqtt waited for each
    acknowledgement in a coroutine that dropped the message from the session when the connection
    closed or after 5 s, so what a persistent session had been sent and not acknowledged (an agency
    receiver or a gate stopped before its commit; verify-acl, which acknowledges nothing on an
    agency's session) was lost. Messages are sent from the session (at most `max_in_flight`
    unacknowledged) and acknowledgements handled as they arrive instead."""

    _OVERRIDDEN = ("mqtt_publish", "_retry_deliveries", "handle_puback", "handle_pubrec", "handle_pubcomp",
                   "handle_pubrel")
    _USED = ("init_from_connect", "_send_packet")
    # Unacknowledged QoS 1 and 2 messages per session, as broker-config's max_inflight_messages: the
    # rest wait in the session, in order (amqtt sent everything, and a session past 65535
    # unacknowledged had no packet id left: the message was dropped).
    max_in_flight = 1000
    _WAITING = "edge.embedded.waiting"  # Session.attributes key: deque of (topic, data, qos, retain)

    async def mqtt_publish(self, topic, data, qos, retain, ack_timeout=None):
        if qos not in (QOS_1, QOS_2):
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        self.session.attributes.setdefault(self._WAITING, collections.deque()).append((topic, data, qos, retain))
        await self._send_waiting()
        return None

    async def _send_waiting(self) -> None:
        session = self.session
        waiting = session.attributes.get(self._WAITING)
        while waiting and len(session.inflight_out) < self.max_in_flight:
            topic, data, qos, retain = waiting.popleft()
            await self._send_in_flight(OutgoingApplicationMessage(session.next_packet_id, topic, qos, data, retain))

    async def _send_in_flight(self, message) -> None:
        """Send (or send again) an outgoing QoS 1 or 2 message; it stays in the session until acknowledged."""
        self.session.inflight_out[message.packet_id] = message
        if message.pubrec_packet is not None:  # QoS 2 past PUBREC: the PUBREL again
            await self._send_packet(PubrelPacket.build(message.packet_id))
            return
        packet = message.build_publish_packet(dup=message.publish_packet is not None)
        await self._send_packet(packet)
        message.publish_packet = packet

    async def _retry_deliveries(self) -> None:
        # On a resumed session: what it was sent and did not acknowledge, in order, DUP set, without
        # waiting for the acknowledgements (amqtt waited up to 10 s for them before reading this
        # connection's first SUBSCRIBE or PUBLISH). An incoming QoS 2 message past its PUBREC waits
        # for the PUBREL the client sends again (handle_pubrel), as on Mosquitto.
        for message in list(self.session.inflight_out.values()):
            await self._send_in_flight(message)
        await self._send_waiting()

    async def handle_pubrel(self, pubrel) -> None:
        # amqtt released an incoming QoS 2 message only to the coroutine of the connection that
        # received it, and answered any other PUBREL (the client's again after a reconnect; one
        # for an id the broker no longer holds) with nothing: the client's QoS 2 flow never ended.
        # Such a PUBREL now releases what the session holds and is answered PUBCOMP (as Mosquitto).
        waiter = self._pubrel_waiters.get(pubrel.packet_id)
        if waiter is not None and not waiter.done():
            return await super().handle_pubrel(pubrel)
        message = self.session.inflight_in.pop(pubrel.packet_id, None)
        if message is not None:
            message.pubrel_packet = pubrel
            await self.session.delivered_message_queue.put(message)
        await self._send_packet(PubcompPacket.build(pubrel.packet_id))

    def _in_flight(self, packet_id: int, qos: int):
        message = self.session.inflight_out.get(packet_id) if self.session is not None else None
        if message is None or message.qos != qos:
            log.debug("embedded broker: an acknowledgement for packet id %s, not in flight at QoS %d", packet_id, qos)
            return None
        return message

    async def handle_puback(self, puback) -> None:
        packet_id = puback.variable_header.packet_id
        if (message := self._in_flight(packet_id, QOS_1)) is not None:
            message.puback_packet = puback
            del self.session.inflight_out[packet_id]
            await self._send_waiting()

    async def handle_pubrec(self, pubrec) -> None:
        message = self._in_flight(pubrec.packet_id, QOS_2)
        pubrel = PubrelPacket.build(pubrec.packet_id)  # to an unknown id too, so the client can finish (as Mosquitto)
        if message is not None:
            message.pubrec_packet, message.pubrel_packet = pubrec, pubrel
        await self._send_packet(pubrel)

    async def handle_pubcomp(self, pubcomp) -> None:
        if (message := self._in_flight(pubcomp.packet_id, QOS_2)) is not None:
            message.pubcomp_packet = pubcomp
            del self.session.inflight_out[pubcomp.packet_id]
            await self._send_waiting()


class _RegistryBroker(Broker):
    """amqtt's Broker, made to authenticate before touching sessions, check wills, filter retained
    messages and keep unacknowledged deliveries (the module docstring). Written against amqtt 0.12's
    Broker and BrokerProtocolHandler internals; the tests in tests/test_embedded_broker_sessions.py and
    tests/test_embedded_broker_redelivery.py fail should a later amqtt change them."""

    _OVERRIDDEN = ("_initialize_client_session", "_publish_session_retained_messages",
                   "_publish_retained_messages_for_subscription", "_handle_message_delivery", "_broadcast_message",
                   "_run_broadcast")
    _USED = ("_authenticate", "_topic_filtering", "_delete_session", "_get_handler", "_matches",
             "_retain_broadcast_message")

    def __init__(self, *args, **kwargs):
        # An amqtt whose Broker (or handler) no longer has these would never call the overrides:
        # refuse to run without the safeguards rather than run as if they were there.
        missing = [*_missing(Broker, (*self._OVERRIDDEN, *self._USED)),
                   *_missing(BrokerProtocolHandler, (*_SessionHandler._OVERRIDDEN, *_SessionHandler._USED))]
        if missing:
            raise RuntimeError(f"this amqtt lacks {', '.join(missing)}: the embedded broker's login, "
                               "retained-message and redelivery safeguards are written for amqtt 0.12")
        super().__init__(*args, **kwargs)

    async def _initialize_client_session(self, reader, writer, remote_address, remote_port):
        # Broker._initialize_client_session, with the login checked first (and our handler).
        try:
            handler, session = await _SessionHandler.init_from_connect(reader, writer, self.plugins_manager)
        except AMQTTError as exc:
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            raise AMQTTError(exc) from exc
        if not await self._authenticate(session, None):
            # Refused before amqtt deletes (clean session) or takes over (persistent) the session
            # of the client id this connection gave.
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError(f"{format_client_message(session=session)}: not authorized")
        if session.will_flag and not await self._topic_filtering(session, session.will_topic, Action.PUBLISH):
            # Mosquitto checks a will against the login's publish rules and drops it: so here.
            log.warning("dropped the will of %s: %r is not a topic it may publish to", session.username,
                        session.will_topic)
            session.will_flag = False
            session.will_retain = False
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for name in ("will_flag", "will_retain", "will_message", "will_topic", "will_qos", "keep_alive",
                         "username", "password"):
                setattr(existing, name, getattr(session, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _handle_message_delivery(self, client_session, handler, wait_deliver) -> bool:
        # A client's PUBLISH goes out to the subscribers: note its QoS for _broadcast_message.
        message = wait_deliver.result()
        token = _publish_qos.set(getattr(message, "qos", None))
        try:
            return await super()._handle_message_delivery(client_session, handler, wait_deliver)
        finally:
            _publish_qos.reset(token)

    async def _broadcast_message(self, session, topic, data, force_qos=None) -> None:
        # amqtt broadcast a client's PUBLISH without its QoS, and delivered it at each subscription's.
        await super()._broadcast_message(session, topic, data, _publish_qos.get() if force_qos is None else force_qos)

    async def _run_broadcast(self, running_tasks) -> None:
        # Broker._run_broadcast, delivering at the lower of the publish's QoS and the subscription's
        # (amqtt: the subscription's, so a QoS 0 publish came at QoS 1 and stayed unacknowledged in a
        # persistent session) and queueing only QoS 1 and 2 for an offline session (amqtt queued QoS
        # 0 too; Mosquitto's queue_qos0_messages is false by default). A snapshot of the subscriptions:
        # one made while a delivery was checked changed the dict under amqtt's loop.
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        for topic_filter, subscriptions in list(self._subscriptions.items()):
            if not self._matches(topic, topic_filter):
                continue
            for target, sub_qos in list(subscriptions):
                qos = min(sub_qos, broadcast.get("qos", sub_qos))
                if not await self._topic_filtering(target, topic=topic, action=Action.RECEIVE):
                    continue
                if target.transitions.state != "connected":
                    if qos in (QOS_1, QOS_2) and not target.clean_session and not target.is_anonymous:
                        await self._retain_broadcast_message(broadcast, qos, target)
                    continue
                handler = self._get_handler(target)
                if handler is not None:
                    running_tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, broadcast["data"], qos,
                                                                                    retain=False)))

    async def _publish_session_retained_messages(self, session) -> None:
        # What was queued for a persistent session while it was offline (amqtt calls these "retained")
        # is delivered on an existing subscription: retain flag 0, as Mosquitto and MQTT 3.1.1 say.
        # amqtt set it, and the gate refuses what is delivered retained (refuse:retained): every raw
        # read queued while the gate was offline was refused instead of forwarded.
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        while not session.retained_messages.empty():
            queued = await session.retained_messages.get()
            tasks.append(asyncio.ensure_future(handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)))
        if tasks:
            await asyncio.wait(tasks)

    async def _publish_retained_messages_for_subscription(self, subscription, session) -> None:
        # amqtt calls this on each connect with every subscription filter in the broker (anyone's):
        # only the session's own subscriptions, and only what its login may receive; at the lower of
        # the retained message's QoS and the one granted (amqtt: a retained QoS 0 went at the
        # subscription's QoS, and on a connect everything at QoS 0).
        topic_filter, _requested = subscription
        granted = [q for s, q in self._subscriptions.get(topic_filter, ()) if s.client_id == session.client_id]
        if not granted:
            return
        qos = granted[0]
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if self._matches(topic, topic_filter) and await self._topic_filtering(session, topic, Action.RECEIVE):
                tasks.append(asyncio.ensure_future(
                    handler.mqtt_publish(retained.topic, retained.data,
                                         min(qos, qos if retained.qos is None else retained.qos), retain=True)))
        if tasks:
            await asyncio.wait(tasks)


class EmbeddedBroker:
    """`with EmbeddedBroker(registry, secrets) as b: b.url("sac-pd")`"""

    def __init__(self, registry: Registry, secrets: Secrets, host: str = "127.0.0.1", port: int = 0, policy=None):
        self.registry = registry
        self.policy = policy  # agencies it refuses for every camera owner get no rights (brokerconf.build_acl)
        self.secrets = secrets
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: _RegistryBroker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _config(self) -> dict:
        acl = build_acl(self.registry, self.policy)
        users = {p.username: hash_password(self.secrets.password(p)) for p in self.registry.principals()}
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {
                f"{__name__}.RegistryAuthPlugin": {"users": users, "client_ids": {
                    p.username: bound_client_id(self.registry, p) for p in self.registry.principals()
                    if bound_client_id(self.registry, p) is not None}},
                f"{__name__}.RegistryTopicPlugin": {"read": {u: list(t) for u, t in acl.read.items()},
                                                    "write": {u: list(t) for u, t in acl.write.items()}},
            },
        }

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._broker = _RegistryBroker(self._config(), loop=loop)
            loop.run_until_complete(self._broker.start())
        except BaseException as err:  # reported by start()
            self._error = err
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        if self._thread is not None and self._thread.is_alive():
            # already running (`with EmbeddedBroker(...).start() as b` starts twice): a second
            # broker thread failed to bind, took over _loop, and stop() then left the first running
            return self
        self._ready.clear()  # a start after stop() waits for its own broker, not the last one's
        self._error = None
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)  # amqtt logs every packet at INFO
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded broker did not start")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        fut = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            fut.result(timeout)
        except Exception as err:  # noqa: BLE001 - shutting down anyway
            log.debug("embedded broker shutdown: %s", err)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, principal=None) -> BrokerURL:
        base = BrokerURL(self.host, self.port)
        if principal is None:
            return base
        return base.with_login(principal.username, self.secrets.password(principal))
