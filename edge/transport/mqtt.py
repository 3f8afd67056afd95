"""The one place that speaks MQTT (paho-mqtt 2.x): broker URLs, connecting, collecting messages.

Broker URL: `mqtt://[user[:password]@]host[:port]` (default port 1883) or `mqtts://...` (TLS,
default 8883; `?ca=PATH` for a private CA, `?insecure=1` to skip host name checks in a lab).
User and password in the URL are percent-decoded. Everything else about a connection (client id,
MQTT 5 or 3.1.1, persistent session, manual acknowledgement) is an argument of `connect()`.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

MQTT_V5 = mqtt.MQTTv5
MQTT_V311 = mqtt.MQTTv311


class BrokerURLError(ValueError):
    pass


class MQTTError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    insecure: bool = False

    def with_login(self, username: str, password: str) -> "BrokerURL":
        return replace(self, username=username, password=password)

    def redacted(self) -> str:
        """For logs and reports: never print a password."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def redact_url(url: str) -> str:
    """The URL as logs and error messages may show it: a password in it is replaced by ***.
    Anything that is not a URL with a password (a file path, a synthetic: spec) comes back as is.

    The user info is everything up to the last '@' after `scheme://`, not what urlsplit finds: a
    password with an unencoded '/', '#' or '?' ends urlsplit's netloc early, and the rest of the
    password was shown as the URL's path (`mqtt://gate:top/secret@host` showed `/secret@host`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return url  # no password (a user alone, or no user info)
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}://{user}:***@{rest[at + 1:]}"


def parse_broker_url(url: str) -> BrokerURL:
    shown = redact_url(url)  # errors end up in logs and terminals: never echo the password
    rest = url.partition("://")[2]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if rest.rfind("@") > cut:  # e.g. mqtt://gate:top/secret@host: urlsplit would take '/secret@host' as a path
        raise BrokerURLError(f"broker URL {shown!r}: a '/', '?', '#' or '@' in the login must be percent-encoded "
                             "(%2F, %3F, %23, %40)")
    try:
        parts = urlsplit(url)
    except ValueError as err:  # e.g. an unclosed IPv6 bracket
        raise BrokerURLError(f"broker URL {shown!r}: {err}") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise BrokerURLError(f"broker URL {shown!r}: scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise BrokerURLError(f"broker URL {shown!r}: no host")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BrokerURLError(f"broker URL {shown!r}: bad port") from None
    if parts.path not in ("", "/"):
        raise BrokerURLError(f"broker URL {shown!r}: unexpected path {parts.path!r}")
    query = parse_qs(parts.query)
    unknown = set(query) - {"ca", "insecure"}
    if unknown:
        raise BrokerURLError(f"broker URL {shown!r}: unknown option(s) {sorted(unknown)}")
    return BrokerURL(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ca_file=query.get("ca", [None])[0],
        insecure=query.get("insecure", ["0"])[0] in ("1", "true", "yes"),
    )


def connect(
    broker: BrokerURL,
    client_id: str = "",
    *,
    protocol: int = MQTT_V5,
    clean_start: bool | str = True,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
    manual_ack: bool = False,
    max_inflight: int = 0,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None] | None = None,
    subscriptions: Iterable[tuple[str, object]] = (),  # (topic, QoS or paho SubscribeOptions)
    timeout: float = 10.0,
    keepalive: int = 30,
    will: tuple[str, bytes, int, bool] | None = None,
    start_loop: bool = True,
) -> mqtt.Client:
    """Connect, wait for CONNACK (raise MQTTError naming the reason), subscribe, start the loop.

    `max_inflight` 0 (no limit on unacknowledged outgoing QoS 1 messages) is also the fast path:
    with a limit, paho rescans every queued message on each PUBACK (quadratic under load).
    Subscriptions are made again on every reconnect (a broker restart with a clean session would
    otherwise leave the client deaf). `client.suback_codes[topic]` holds the latest SUBACK codes,
    `client.server_receive_maximum` the broker's Receive Maximum from the latest CONNACK.
    `clean_start="first-only"` (MQTT 5): a new session on the first connect of this client, the same
    session on its reconnects (for a sender whose in-flight state lives in this process only).
    """
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if protocol == MQTT_V5 else bool(clean_start),
        reconnect_on_failure=True,
    )
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(0.05, 2.0)
    if manual_ack:
        client.manual_ack_set(True)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    if broker.tls:
        ctx = ssl.create_default_context(cafile=broker.ca_file)
        if broker.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        client.tls_set_context(ctx)
    subs = list(subscriptions)
    connected = threading.Event()
    result: dict[str, object] = {}
    client.suback_codes = {}  # type: ignore[attr-defined]
    client.server_receive_maximum = 65535  # type: ignore[attr-defined]  (updated by every CONNACK)
    pending_subs: dict[int, str] = {}
    subs_done = threading.Event()
    if not subs:
        subs_done.set()

    def _on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        # MQTT 5: how many QoS 1/2 publishes this broker accepts unacknowledged from us. paho does not
        # enforce it; Mosquitto refuses a QoS 2 publish beyond it (quota exceeded) and paho never
        # completes that message. Senders that pipeline (the gate) stay under it themselves.
        c.server_receive_maximum = getattr(properties, "ReceiveMaximum", None) or 65535
        if not reason_code.is_failure and subs:
            mid = c.subscribe(subs)[1]
            pending_subs[mid] = ",".join(t for t, _ in subs)
        connected.set()

    def _on_subscribe(c, userdata, mid, reason_codes, properties):
        topic = pending_subs.pop(mid, None)
        if topic is not None:
            for (t, _), code in zip(subs, reason_codes):
                c.suback_codes[t] = code
            subs_done.set()

    client.on_connect = _on_connect
    client.on_subscribe = _on_subscribe
    if on_message is not None:
        client.on_message = on_message
    props = None
    if protocol == MQTT_V5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
    try:
        client.connect(broker.host, broker.port, keepalive=keepalive,
                       clean_start=(mqtt.MQTT_CLEAN_START_FIRST_ONLY if clean_start == "first-only" else clean_start)
                       if protocol == MQTT_V5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                       properties=props)
    except OSError as err:
        raise MQTTError(f"cannot reach broker {broker.redacted()}: {err}") from None
    if start_loop:
        client.loop_start()
        if not connected.wait(timeout):
            client.loop_stop()
            raise MQTTError(f"no CONNACK from {broker.redacted()} within {timeout} s")
        rc = result["rc"]
        if isinstance(rc, ReasonCode) and rc.is_failure:
            client.loop_stop()
            client.disconnect()
            raise MQTTError(f"broker {broker.redacted()} refused login {broker.username!r}: {rc}")
        if not subs_done.wait(timeout):
            raise MQTTError(f"no SUBACK from {broker.redacted()} within {timeout} s")
    return client


def close(client: mqtt.Client) -> None:
    try:
        client.disconnect()
    finally:
        client.loop_stop()


def take_batch(q: "queue.Queue", limit: int, wait_s: float, first_timeout: float | None = None) -> list:
    """Up to `limit` received messages from `q` (filled by an on_message callback): waits up to
    `first_timeout` (default `wait_s`) for the first, then at most `wait_s` more to fill the batch.
    The gate and the agency receiver commit a batch in one transaction and acknowledge after it."""
    try:
        batch = [q.get(timeout=wait_s if first_timeout is None else first_timeout)]
    except queue.Empty:
        return []
    deadline = time.monotonic() + wait_s
    while len(batch) < limit:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(q.get(timeout=left))
            except queue.Empty:
                break
    return batch


def wait_published(infos: Iterable[mqtt.MQTTMessageInfo], timeout: float = 10.0) -> bool:
    """Wait until every QoS>0 publish got its PUBACK (or QoS 0 was written)."""
    deadline = time.monotonic() + timeout
    for info in infos:
        while not _acknowledged(info):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                time.sleep(min(0.01, left))  # sent after the reconnect; poll until its PUBACK
            else:
                info.wait_for_publish(left)
    return True


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """`is_published()`, except for a QoS>0 publish made while disconnected: paho keeps it, sends it
    after reconnecting and marks it published on the PUBACK, but keeps rc NO_CONN, for which
    `is_published()` raises (a gate publishing forwards during a broker restart crashed on it)."""
    if info.rc == mqtt.MQTT_ERR_NO_CONN:
        with info._condition:  # noqa: SLF001 - no public accessor that does not raise
            return info._published  # noqa: SLF001
    return info.is_published()


def suback_refused(code: ReasonCode | int) -> bool:
    value = code.value if isinstance(code, ReasonCode) else int(code)
    return value >= 0x80


@dataclass
class Collector:
    """Subscribes with one login and keeps every message it receives (leak counting, tests)."""

    broker: BrokerURL
    topics: list[str]
    client_id: str = ""
    protocol: int = MQTT_V5
    qos: int = 1
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    client: mqtt.Client | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def start(self) -> "Collector":
        self.client = connect(self.broker, self.client_id, protocol=self.protocol,
                              on_message=self._on_message, subscriptions=[(t, self.qos) for t in self.topics])
        return self

    @property
    def suback_codes(self) -> dict:
        return self.client.suback_codes if self.client else {}

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        if self.client is not None:
            close(self.client)
            self.client = None

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
