"""Mosquitto configuration generated from the registry: listeners, logins, ACL, persistence, TLS.

Output (one concern per file, every path relative to the output directory, so start mosquitto
from there: `cd OUT && mosquitto -c mosquitto.conf`):

    mosquitto.conf          includes conf.d/
    conf.d/10-listeners.conf  plain listener (loopback by default)
    conf.d/20-auth.conf       no anonymous access; the dynamic-security plugin (or passwd + acl)
    conf.d/30-persistence.conf  sessions and queued QoS 1 messages survive restarts
    conf.d/40-limits.conf     queue and in-flight limits sized for the gate
    conf.d/50-tls.conf        optional TLS listener
    dynamic-security.json     logins (PBKDF2-SHA512), bound client ids and per-login rules, mode 0600
    secrets/                  dev passwords created for missing `file:` credentials, mode 0600

    with auth="acl-file" (a Mosquitto without the plugin), instead of dynamic-security.json:
    passwd                    PBKDF2-SHA512 hashes ($7$, mosquitto_passwd's format), mode 0600
    acl                       per-user topic rules, mode 0600

Why the dynamic-security plugin by default: Mosquitto's acl_file cannot bind a client id to a
login, nor check subscriptions. Without the first, any valid login (a camera, a refused agency)
could connect with the gate's client id and take over its persistent session, dropping the raw
reads queued for it before they were audited; without the second, any login could join the
gates' `$share` group and take a share of the raw reads (refused on delivery, so lost). With the
plugin every camera and agency login may connect only with its own client id (`edge-<camera id>`,
`agency-<agency id>`: one connection per login) and may subscribe only to what it may read;
only the gate's login chooses its client ids (several gates, each with a subscriber and a
forwarder connection).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from edge.policy.registry import Registry, Secrets

RAW_PREFIX = "alpr/raw"
SHARE_PREFIX = "alpr/share"
STATUS_PREFIX = "alpr/status"
GATE_STATUS_PREFIX = "alpr/gate/status"  # alpr/gate/status/<gate id>, retained


def gate_status_topic(gate_id: str) -> str:
    return f"{GATE_STATUS_PREFIX}/{gate_id}"


PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$ in 2.0

# Client ids the broker binds to camera and agency logins (auth="dynsec"): an edge node connects as
# `edge-<camera id>`, an agency receiver as `agency-<agency id>`, and no other login can use them.
CAMERA_CLIENT_PREFIX = "edge-"
AGENCY_CLIENT_PREFIX = "agency-"
AUTH_MODES = ("dynsec", "acl-file")
DYNSEC_FILE = "dynamic-security.json"
# Where distributions install the plugin (Debian/Ubuntu multiarch, source builds, Homebrew).
DYNSEC_PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/lib64/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
)


class BrokerConfigError(ValueError):
    """The broker configuration cannot be written as asked; the text says what to change."""


def camera_client_id(camera_id: str) -> str:
    return f"{CAMERA_CLIENT_PREFIX}{camera_id}"


def agency_client_id(agency_id: str) -> str:
    return f"{AGENCY_CLIENT_PREFIX}{agency_id}"


def bound_client_id(registry: Registry, principal) -> str | None:
    """The only client id the broker accepts for this principal's login (None: the gate's, free)."""
    if principal is registry.gate or principal.username == registry.gate.username:
        return None
    if registry.camera(getattr(principal, "id", "")) is principal:
        return camera_client_id(principal.id)
    return agency_client_id(principal.id)


def find_dynsec_plugin() -> str | None:
    for candidate in DYNSEC_PLUGIN_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return None


def raw_topic(camera_id: str) -> str:
    return f"{RAW_PREFIX}/{camera_id}"


def share_topic(agency_id: str) -> str:
    return f"{SHARE_PREFIX}/{agency_id}/reads"


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """Mosquitto's `$7$` password hash: PBKDF2-HMAC-SHA512, 12-byte salt, base64 parts."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """False for a wrong password and for anything that is not a well-formed `$7$` hash (a damaged
    passwd line is then rewritten by broker-config instead of stopping it)."""
    try:
        _, seven, iterations, salt_b64, digest_b64 = encoded.split("$")
        if seven != "7" or not 1 <= int(iterations) <= 10_000_000:
            return False
        salt = base64.b64decode(salt_b64, validate=True)
    except ValueError:  # wrong number of parts, iterations not a number, bad base64 (binascii.Error)
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(iterations))
    return secrets.compare_digest(base64.b64encode(digest).decode(), digest_b64)


@dataclass(frozen=True)
class TlsListener:
    port: int
    certfile: str
    keyfile: str
    cafile: str | None = None
    bind: str = "0.0.0.0"


@dataclass(frozen=True)
class Acl:
    """Per-username topic rules, the same for Mosquitto's acl file and the embedded broker."""

    read: dict[str, tuple[str, ...]]  # subscribe and receive
    write: dict[str, tuple[str, ...]]  # publish
    policy: str | None = None  # the policy's label when the rules follow one
    refused: frozenset[str] = frozenset()  # agency ids that policy refuses for every camera owner


def refused_agencies(registry: Registry, policy) -> frozenset[str]:
    """Agencies the policy refuses whatever camera a read comes from: the broker gives them nothing."""
    from edge.policy.policy import compile_decisions

    table = compile_decisions(policy, registry)
    allowed = {a for recipients in table.allowed_by_owner.values() for a in recipients}
    return frozenset(a.id for a in registry.agencies if a.id not in allowed)


def build_acl(registry: Registry, policy=None) -> Acl:
    """Per-login rules from the registry. With `policy` (a loaded Policy), an agency the policy refuses
    for every camera owner gets no rights at all, not even on its own share topic: should a gate ever
    publish there (a bug, a wrong policy file), the broker still delivers nothing to it."""
    read: dict[str, tuple[str, ...]] = {}
    write: dict[str, tuple[str, ...]] = {}
    g = registry.gate.username
    # Operators watch the gates and the cameras' metrics with the gate's login (the gate itself
    # subscribes to raw reads only): no camera or agency login may read any status.
    read[g] = (f"{RAW_PREFIX}/#", f"{GATE_STATUS_PREFIX}/#", f"{STATUS_PREFIX}/#")
    write[g] = (f"{SHARE_PREFIX}/#", f"{GATE_STATUS_PREFIX}/#")
    for c in registry.cameras:
        read[c.username] = ()
        write[c.username] = (raw_topic(c.id), f"{STATUS_PREFIX}/{c.id}")
    refused = refused_agencies(registry, policy) if policy is not None else frozenset()
    for a in registry.agencies:
        read[a.username] = () if a.id in refused else (f"{SHARE_PREFIX}/{a.id}/#",)
        write[a.username] = ()
    return Acl(read, write, policy.label if policy is not None else None, refused)


def render_acl(registry: Registry, acl: Acl) -> str:
    lines = [
        "# Generated by `alpr-edge broker-config` from the registry. Do not edit: regenerate.",
        "# No `pattern` rules and no rules before a `user` line: a login reaches only what is listed",
        "# under its name. `read` covers subscribe and delivery, `write` covers publish.",
        "",
    ]

    def block(comment: str, user: str) -> None:
        lines.append(f"# {comment}")
        lines.append(f"user {user}")
        for t in acl.read.get(user, ()):
            lines.append(f"topic read {t}")
        for t in acl.write.get(user, ()):
            lines.append(f"topic write {t}")
        lines.append("")

    block("the policy gate: the only reader of raw reads and the only writer of shared reads", registry.gate.username)
    for c in registry.cameras:
        block(f"camera {c.id} (operated by {c.agency}): writes its own raw and status topics only", c.username)
    for a in registry.agencies:
        block(f"agency {a.id} ({a.kind.value}, {a.jurisdiction}): {_agency_rule(acl, a.id)}", a.username)
    return "\n".join(lines)


def _agency_rule(acl: Acl, agency_id: str) -> str:
    if agency_id in acl.refused:
        return f"refused by policy {acl.policy} for every camera owner: no access"
    return "reads its own share topic only"


def _split_hash(encoded: str) -> tuple[int, str, str]:
    _, _, iterations, salt_b64, digest_b64 = encoded.split("$")
    return int(iterations), salt_b64, digest_b64


def build_dynsec(registry: Registry, acl: Acl, hashes: dict[str, str]) -> dict:
    """The dynamic-security plugin's configuration: one client per principal, one role per client.

    Deny by default (publish, receive, subscribe); each role allows what `acl` lists for its login:
    `read` topics as subscribePattern + publishClientReceive, `write` topics as publishClientSend.
    A subscription is checked against its whole filter, `$share/<group>/` included, so only the
    gate's role also allows `$share/+/alpr/raw/#`. Camera and agency clients are bound to one
    client id each; the gate's is not (gates choose `<client_id>-<gate id>` and `...-fwd`).
    """

    def allow(acltype: str, topic: str) -> dict:
        return {"acltype": acltype, "topic": topic, "allow": True}

    def role(name: str, user: str, extra_subscribe: tuple[str, ...] = ()) -> dict:
        acls = []
        for t in acl.read.get(user, ()):
            acls += [allow("subscribePattern", t), allow("publishClientReceive", t)]
        acls += [allow("subscribePattern", t) for t in extra_subscribe]
        acls += [allow("publishClientSend", t) for t in acl.write.get(user, ())]
        return {"rolename": name, "acls": acls}

    def client(principal, text: str, rolename: str, client_id: str | None) -> dict:
        iterations, salt, digest = _split_hash(hashes[principal.username])
        c = {"username": principal.username, "textName": text, "password": digest, "salt": salt,
             "iterations": iterations, "roles": [{"rolename": rolename}]}
        if client_id is not None:
            c["clientid"] = client_id
        return c

    g = registry.gate
    clients = [client(g, "the policy gate (chooses its client ids)", "gate", None)]
    roles = [role("gate", g.username, (f"$share/+/{RAW_PREFIX}/#",))]
    for c in registry.cameras:
        clients.append(client(c, f"camera {c.id} (operated by {c.agency})", f"camera-{c.id}", camera_client_id(c.id)))
        roles.append(role(f"camera-{c.id}", c.username))
    for a in registry.agencies:
        clients.append(client(a, f"agency {a.id} ({a.kind.value}, {a.jurisdiction}): {_agency_rule(acl, a.id)}",
                              f"agency-{a.id}", agency_client_id(a.id)))
        roles.append(role(f"agency-{a.id}", a.username))
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def _existing_hashes(out: Path) -> dict[str, str]:
    """username -> `$7$` hash from what an earlier run wrote (either format), for reuse."""
    existing: dict[str, str] = {}
    if (out / "passwd").exists():
        for line in (out / "passwd").read_text(encoding="utf-8").splitlines():
            user, _, encoded = line.partition(":")
            existing[user] = encoded
    try:
        data = json.loads((out / DYNSEC_FILE).read_text(encoding="utf-8"))
        for c in data.get("clients", []):
            existing[c["username"]] = f"$7${int(c['iterations'])}${c['salt']}${c['password']}"
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # none yet, or damaged: fresh hashes
    return existing


def render_conf_files(port: int = 1883, bind: str = "127.0.0.1", tls: TlsListener | None = None,
                      max_queued: int = 1_000_000, run_as: str | None = None, auth: str = "dynsec",
                      dynsec_plugin: str | None = None) -> dict[str, str]:
    if auth == "dynsec":
        auth_conf = (
            "# Every client logs in as a registry principal. The dynamic-security plugin holds the\n"
            "# logins and rules (dynamic-security.json): deny by default, each login its own topics,\n"
            "# subscriptions checked (no joining the gates' $share group), and every camera and agency\n"
            "# login bound to its own client id (no taking over the gate's session).\n"
            "allow_anonymous false\n"
            f"plugin {dynsec_plugin}\n"
            f"plugin_opt_config_file {DYNSEC_FILE}\n"
        )
    else:
        auth_conf = (
            "# Every client logs in as a registry principal; the ACL limits each to its own topics.\n"
            "# (acl-file mode: client ids are not bound to logins and subscriptions are not checked;\n"
            "# broker-config --auth dynsec closes both.)\n"
            "allow_anonymous false\n"
            "password_file passwd\n"
            "acl_file acl\n"
        )
    files = {
        "mosquitto.conf": (
            "# Generated by `alpr-edge broker-config`; regenerate rather than edit.\n"
            "# Paths are relative: start the broker from this directory,\n"
            "#   mosquitto -c mosquitto.conf\n"
            "# One concern per file in conf.d/ (listeners, auth, persistence, limits, tls).\n"
            "# Listener settings are global: every listener uses the same logins and ACL.\n"
            "per_listener_settings false\n"
            "include_dir conf.d\n"
        ),
        "conf.d/10-listeners.conf": (
            "# Plain MQTT. Loopback by default: beyond this machine use the TLS listener.\n"
            f"listener {port} {bind}\n"
        ),
        "conf.d/20-auth.conf": auth_conf,
        "conf.d/30-persistence.conf": (
            "# Persistent sessions (the gate's included) and their queued QoS 1 messages survive a\n"
            "# broker restart: a read a camera published is not lost while the gate is down.\n"
            "persistence true\n"
            "persistence_location data/\n"
            "autosave_interval 30\n"
            "# Sessions of principals gone for a week are dropped.\n"
            "persistent_client_expiration 7d\n"
        ),
        "conf.d/40-limits.conf": (
            "# While the gate is down its session queues every raw read: the default (1000) would\n"
            "# drop reads after a second of traffic.\n"
            f"max_queued_messages {max_queued}\n"
            "# The gate acknowledges a raw read only after auditing it, in batches: let a batch's\n"
            "# worth be in flight (MQTT 5 clients may lower it with Receive Maximum).\n"
            "max_inflight_messages 1000\n"
            "# A read event is at most 16 KiB; refuse anything far larger at the door.\n"
            "max_packet_size 65536\n"
        ),
    }
    if run_as:
        files["conf.d/05-process.conf"] = (
            "# Started as root, mosquitto switches to this user before reading its logins and rules\n"
            "# (mode 0600): it must own them.\n"
            f"user {run_as}\n"
        )
    if tls is not None:
        text = (
            "# TLS listener for cameras and agencies beyond this machine (same logins and ACL).\n"
            f"listener {tls.port} {tls.bind}\n"
            f"certfile {tls.certfile}\n"
            f"keyfile {tls.keyfile}\n"
            "tls_version tlsv1.2\n"
        )
        if tls.cafile:
            text += f"cafile {tls.cafile}\n"
        files["conf.d/50-tls.conf"] = text
    return files


def write_broker_config(registry: Registry, out_dir: str | os.PathLike, secrets_dir: str | os.PathLike | None = None,
                        port: int = 1883, bind: str = "127.0.0.1", tls: TlsListener | None = None,
                        run_as: str | None = None, extra_conf: dict[str, str] | None = None,
                        auth: str = "dynsec", dynsec_plugin: str | None = None, policy=None) -> list[Path]:
    """Write the configuration; create missing `file:` dev passwords. Returns the files written.

    `auth`: "dynsec" (default: the dynamic-security plugin, `dynsec_plugin` its path, found when not
    given) or "acl-file" (passwd + acl, for a Mosquitto without the plugin; see the module docstring).
    `policy`: a loaded Policy; agencies it refuses for every camera owner get no rights (build_acl)."""
    if auth not in AUTH_MODES:
        raise BrokerConfigError(f"auth {auth!r}: must be one of {', '.join(AUTH_MODES)}")
    if auth == "dynsec":
        if dynsec_plugin and not os.path.isfile(dynsec_plugin):
            raise BrokerConfigError(f"--dynsec-plugin {dynsec_plugin}: no such file")
        dynsec_plugin = dynsec_plugin or find_dynsec_plugin()
        if not dynsec_plugin:
            raise BrokerConfigError(
                "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) was not found in "
                f"{', '.join(os.path.dirname(c) for c in DYNSEC_PLUGIN_CANDIDATES)}: give its path "
                "(--dynsec-plugin PATH), or --auth acl-file for a Mosquitto without it")
    if tls is not None and tls.port == port and (tls.bind == bind or {tls.bind, bind} & {"0.0.0.0", "::", ""}):
        # mosquitto opens the plain listener, then fails on the TLS one: 'Address already in use'
        raise BrokerConfigError(f"--tls-port {tls.port} is also the plain listener's port on {bind}: choose "
                                "another (8883 is the usual MQTT over TLS port)")
    owner = _broker_owner(run_as)
    out = Path(out_dir)
    (out / "conf.d").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    secret_store = Secrets(secrets_dir if secrets_dir is not None else out / "secrets", generate=True)
    written: list[Path] = []
    conf = render_conf_files(port, bind, tls, run_as=run_as, auth=auth, dynsec_plugin=dynsec_plugin)
    for name, text in {**conf, **(extra_conf or {})}.items():
        p = out / name
        p.write_text(text, encoding="utf-8")
        written.append(p)
    for stale in (out / "conf.d").glob("*.conf"):
        if stale not in written:
            stale.unlink()  # e.g. a TLS listener no longer asked for
    # Keep a principal's existing hash while it still matches its password: regenerating the
    # configuration then changes only what the registry changed.
    existing = _existing_hashes(out)
    hashes: dict[str, str] = {}
    for p in registry.principals():
        password = secret_store.password(p)
        old = existing.get(p.username)
        keep = old is not None and old.startswith("$7$") and check_password(password, old)
        hashes[p.username] = old if keep else hash_password(password)
    acl = build_acl(registry, policy)
    if auth == "dynsec":
        private = {DYNSEC_FILE: json.dumps(build_dynsec(registry, acl, hashes), indent=2) + "\n"}
        stale_names = ("passwd", "acl")  # an earlier acl-file configuration: no longer read
    else:
        private = {"passwd": "".join(f"{u}:{h}\n" for u, h in hashes.items()), "acl": render_acl(registry, acl)}
        stale_names = (DYNSEC_FILE,)
    for name in stale_names:
        (out / name).unlink(missing_ok=True)
    for name, text in private.items():
        p = out / name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(p, 0o600)
        written.append(p)
    if owner is not None:
        # Started as root, mosquitto switches to this user before it loads the plugin's file (or the
        # passwd and acl) and writes its persistence database: files root keeps at mode 0600 left the
        # dynamic-security plugin with no login at all (mosquitto still runs, refusing everyone) and
        # the sessions unsaved ("Error saving in-memory database").
        uid, gid = owner
        for p in [*(out / name for name in private), out / "data", *(out / "data").iterdir()]:
            os.chown(p, uid, gid)
    return written


def _broker_owner(run_as: str | None) -> tuple[int, int] | None:
    """(uid, gid) to give the broker's private files and data/ to, when writing them as root: the
    --run-as user, else `mosquitto` (the user mosquitto switches to by default), if it exists."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(run_as or "mosquitto")
    except KeyError:
        if run_as:
            raise BrokerConfigError(f"--run-as {run_as}: no such user on this machine") from None
        return None
    return entry.pw_uid, entry.pw_gid
