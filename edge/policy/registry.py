"""The agency registry: who may connect to the broker and as what.

One YAML file describes every principal: the gate, each camera (and the agency operating it) and
each agency that may receive reads (kind, jurisdiction, declared purpose, optional on-behalf-of).
The same file generates the broker's password file and ACL (`broker-config`) and the gate's view
of the agencies, so the broker and the gate cannot drift apart.

Credentials are references, never secrets: `file:NAME` (a file in the secrets directory, created
with a random dev password by `broker-config` when missing) or `env:VAR`.
"""

from __future__ import annotations

import os
import secrets as _secrets
from enum import Enum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError, model_validator

from edge.schema import Identifier, StateCode, describe_validation_error

# MQTT usernames end up in the ACL file ("user NAME" lines) and topics: no whitespace, no '/'.
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CredentialsRef = Annotated[str, StringConstraints(pattern=r"^(file:[A-Za-z0-9_.-]{1,128}|env:[A-Z_][A-Z0-9_]{0,127})$")]
Purpose = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


class RegistryError(ValueError):
    """An invalid registry file. The text names the field."""


class _NoDuplicateKeysLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: plain YAML keeps the
    last silently, so a second `purposes:` block or `kind:` line would quietly replace the first."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping names that error itself
            break
        if duplicate:
            raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                    f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_NoDuplicateKeysLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str):
    """Parse a policy-side YAML file (registry, policy, holds): safe_load, duplicate keys refused."""
    return yaml.load(text, Loader=_NoDuplicateKeysLoader)  # noqa: S506 - a SafeLoader subclass


def describe_yaml_error(err: yaml.YAMLError) -> str:
    """One line (PyYAML's own text spans several, quoting the source): the problem and where."""
    if not isinstance(err, yaml.MarkedYAMLError) or not err.problem:
        return " ".join(str(err).split())
    where = lambda mark: f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""  # noqa: E731
    text = f"{err.problem}{where(err.problem_mark)}"
    if err.context:
        text += f", {err.context}{where(err.context_mark)}"
    return text


class AgencyKind(str, Enum):
    local = "local"
    state = "state"
    federal = "federal"
    private = "private"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Principal(_Model):
    username: Username
    credentials: CredentialsRef


class Agency(Principal):
    id: Identifier
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    kind: AgencyKind
    jurisdiction: StateCode
    # What this agency says it uses the reads for; the policy refuses listed and unknown purposes.
    purpose: Purpose
    # A request made for another agency is judged as that agency's too (a state task force asking
    # for a federal one is refused like the federal one).
    on_behalf_of: Identifier | None = None


class Camera(Principal):
    id: Identifier
    agency: Identifier  # the operating agency (owner of the reads)


class GatePrincipal(Principal):
    # Gates connect as `<client_id>-<gate id>` (and `...-fwd`); cameras and agencies are bound by
    # the broker to `edge-<camera id>` and `agency-<agency id>`, so the gate's must not look like those.
    client_id: Identifier = "alpr-gate"

    @model_validator(mode="after")
    def _not_a_bound_prefix(self) -> "GatePrincipal":
        for reserved in ("edge", "agency"):
            if self.client_id == reserved or self.client_id.startswith(f"{reserved}-"):
                raise ValueError(f"client_id {self.client_id!r}: '{reserved}-...' client ids belong to "
                                 f"{'cameras' if reserved == 'edge' else 'agencies'}; choose another")
        return self


class Registry(_Model):
    version: Annotated[int, Field(ge=1)] = 1
    gate: GatePrincipal
    agencies: Annotated[list[Agency], Field(min_length=1)]
    cameras: list[Camera] = []

    _agency_index: dict[str, Agency] = PrivateAttr(default_factory=dict)
    _camera_index: dict[str, Camera] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "Registry":
        ids = [a.id for a in self.agencies]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate agency id(s): {sorted(dup)}")
        cam_ids = [c.id for c in self.cameras]
        dup = {i for i in cam_ids if cam_ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate camera id(s): {sorted(dup)}")
        users = [self.gate.username] + [a.username for a in self.agencies] + [c.username for c in self.cameras]
        dup = {u for u in users if users.count(u) > 1}
        if dup:
            # One login per principal: the broker's ACL is per username.
            raise ValueError(f"username(s) used by more than one principal: {sorted(dup)}")
        known = set(ids)
        for c in self.cameras:
            if c.agency not in known:
                raise ValueError(f"camera '{c.id}': operating agency '{c.agency}' is not in agencies")
        for a in self.agencies:
            if a.on_behalf_of is not None and a.on_behalf_of not in known:
                raise ValueError(f"agency '{a.id}': on_behalf_of '{a.on_behalf_of}' is not in agencies")
            if a.on_behalf_of == a.id:
                raise ValueError(f"agency '{a.id}': on_behalf_of names itself")
        return self

    def model_post_init(self, __context) -> None:
        self._agency_index = {a.id: a for a in self.agencies}
        self._camera_index = {c.id: c for c in self.cameras}

    def agency(self, agency_id: str) -> Agency | None:
        return self._agency_index.get(agency_id)

    def camera(self, camera_id: str) -> Camera | None:
        return self._camera_index.get(camera_id)

    def principals(self) -> list[Principal]:
        return [self.gate, *self.cameras, *self.agencies]


def load_registry(path: str | os.PathLike) -> Registry:
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:  # not UTF-8 text: still the loader's own error
        raise RegistryError(f"cannot read registry {path}: {err}") from None
    except RecursionError:
        raise RegistryError(f"registry {path} is nested too deeply") from None
    except yaml.YAMLError as err:
        raise RegistryError(f"registry {path} is not valid YAML: {describe_yaml_error(err)}") from None
    return parse_registry(data, source=str(path))


def parse_registry(data: object, source: str = "<registry>") -> Registry:
    if not isinstance(data, dict):
        raise RegistryError(f"{source}: expected a mapping at the top level")
    try:
        return Registry.model_validate(data)
    except ValidationError as err:
        msg, _ = describe_validation_error(err)
        raise RegistryError(f"{source}: {msg}") from None


class Secrets:
    """Resolves credential references to passwords.

    `file:NAME` reads `<directory>/NAME` (one line). With `generate=True`, a missing file is created
    with a random dev password, mode 0600 (what `broker-config` does for the worked example).
    """

    def __init__(self, directory: str | os.PathLike | None, generate: bool = False,
                 overrides: dict[str, str] | None = None):
        self.directory = Path(directory) if directory is not None else None
        self.generate = generate
        self.overrides = dict(overrides or {})

    def password(self, principal: Principal) -> str:
        if principal.username in self.overrides:
            return self.overrides[principal.username]
        scheme, _, name = principal.credentials.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if not value:
                raise RegistryError(f"{principal.username}: credentials {principal.credentials}: variable is not set")
            return value
        if self.directory is None:
            raise RegistryError(f"{principal.username}: credentials {principal.credentials}: no secrets directory given")
        path = self.directory / name
        if not path.exists():
            if not self.generate:
                raise RegistryError(f"{principal.username}: credentials file {path} does not exist")
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(_secrets.token_urlsafe(24) + "\n")
        mode = path.stat().st_mode
        if mode & 0o007:
            # Like ssh with a private key: a password any local user can read is not a secret.
            raise RegistryError(f"{principal.username}: credentials file {path} is accessible to every user "
                                f"(mode {mode & 0o777:o}): chmod 600 it")
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise RegistryError(f"{principal.username}: credentials file {path} is empty")
        return value


def random_secrets(registry: Registry) -> Secrets:
    """In-memory random passwords for every principal (the embedded demo broker)."""
    return Secrets(None, overrides={p.username: _secrets.token_urlsafe(18) for p in registry.principals()})
