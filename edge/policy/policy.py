"""Sharing policy: which agency may receive a camera's reads, and which rule decided.

A policy file (YAML, validated, versioned) is compiled once, against a registry, into a
`DecisionTable` keyed by (operating agency, recipient agency). The gate looks decisions up per
read; it never parses or evaluates the policy per read. Anything that cannot be decided is
refused: unknown agency, unknown purpose, a broken on-behalf-of chain, an exception while
evaluating (fail closed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from edge.policy.registry import Agency, AgencyKind, Purpose, Registry, describe_yaml_error, load_yaml
from edge.schema import Identifier, StateCode, describe_validation_error

DEFAULT_POLICY = "ca-sb34"

# Rule names recorded in the audit log. "allow:" forwards; everything else refuses.
ALLOW = "allow:in-jurisdiction-public-agency"
REFUSE_UNKNOWN_AGENCY = "refuse:unknown-agency"
REFUSE_UNKNOWN_PURPOSE = "refuse:unknown-purpose"
REFUSE_PURPOSE = "refuse:forbidden-purpose"
REFUSE_KIND = "refuse:recipient-kind"
REFUSE_JURISDICTION = "refuse:out-of-jurisdiction"
REFUSE_ON_BEHALF = "refuse:on-behalf-of"
REFUSE_POLICY_ERROR = "refuse:policy-error"


class PolicyError(ValueError):
    """An invalid policy file, or a policy that cannot be applied. The text names the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecipientRule(_Model):
    kinds: Annotated[list[AgencyKind], Field(min_length=1)]
    jurisdictions: Annotated[list[StateCode], Field(min_length=1)]


class PurposeRule(_Model):
    allowed: Annotated[list[Purpose], Field(min_length=1)]
    refused: dict[Purpose, Annotated[str, StringConstraints(min_length=1, max_length=300)]] = {}

    @model_validator(mode="after")
    def _disjoint(self) -> "PurposeRule":
        both = set(self.allowed) & set(self.refused)
        if both:
            raise ValueError(f"purpose(s) both allowed and refused: {sorted(both)}")
        return self


class Policy(_Model):
    format: Literal[1]
    policy: Identifier
    # At most 9 digits: "<policy>@<version>" travels in every forwarded read, whose schema
    # (edge.schema.ForwardedRead.policy) allows 9; a date-like 2026112701 made every agency
    # receiver refuse every read the gate forwarded (and audited as forwarded).
    version: Annotated[int, Field(ge=1, le=999_999_999)]
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    recipients: RecipientRule
    on_behalf_of: Literal["every-agency-in-chain-must-qualify"] = "every-agency-in-chain-must-qualify"
    purposes: PurposeRule

    @property
    def label(self) -> str:
        return f"{self.policy}@{self.version}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str


def load_policy(path_or_name: str | os.PathLike = DEFAULT_POLICY) -> Policy:
    """A policy file path, or the name of a policy shipped with the package (e.g. 'ca-sb34')."""
    text: str
    source = str(path_or_name)
    path = Path(path_or_name)
    try:
        if path.suffix in (".yaml", ".yml") or path.exists():
            text = path.read_text(encoding="utf-8")
        else:
            ref = resources.files("edge.policy").joinpath("data", f"{source}.yaml")
            if not ref.is_file():
                raise PolicyError(f"no policy file {source!r} and no shipped policy of that name")
            text = ref.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:  # not UTF-8 text: still the loader's own error
        raise PolicyError(f"cannot read policy {source}: {err}") from None
    try:
        data = load_yaml(text)
    except RecursionError:
        raise PolicyError(f"policy {source} is nested too deeply") from None
    except yaml.YAMLError as err:
        raise PolicyError(f"policy {source} is not valid YAML: {describe_yaml_error(err)}") from None
    return parse_policy(data, source)


def parse_policy(data: object, source: str = "<policy>") -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        msg, _ = describe_validation_error(err)
        raise PolicyError(f"{source}: {msg}") from None


def qualifies(policy: Policy, agency: Agency) -> Decision | None:
    """None when the agency is an allowed kind of recipient in an allowed jurisdiction."""
    if agency.kind not in policy.recipients.kinds:
        return Decision(False, REFUSE_KIND, f"{agency.id} is a {agency.kind.value} agency")
    if agency.jurisdiction not in policy.recipients.jurisdictions:
        return Decision(False, REFUSE_JURISDICTION, f"{agency.id} is in {agency.jurisdiction}")
    return None


def evaluate(policy: Policy, registry: Registry, owner_id: str, recipient_id: str) -> Decision:
    """Decide whether reads of cameras operated by `owner_id` may go to `recipient_id`."""
    try:
        if registry.agency(owner_id) is None:
            return Decision(False, REFUSE_UNKNOWN_AGENCY, f"operating agency {owner_id!r} is not registered")
        recipient = registry.agency(recipient_id)
        if recipient is None:
            return Decision(False, REFUSE_UNKNOWN_AGENCY, f"recipient {recipient_id!r} is not registered")
        refused = qualifies(policy, recipient)
        if refused:
            return refused
        if recipient.purpose in policy.purposes.refused:
            return Decision(False, REFUSE_PURPOSE,
                            f"purpose {recipient.purpose}: {policy.purposes.refused[recipient.purpose]}")
        if recipient.purpose not in policy.purposes.allowed:
            return Decision(False, REFUSE_UNKNOWN_PURPOSE, f"purpose {recipient.purpose!r} is not in the policy")
        # Follow the on-behalf-of chain: each agency it names must qualify on its own.
        seen = {recipient.id}
        current = recipient
        while current.on_behalf_of is not None:
            beneficiary = registry.agency(current.on_behalf_of)
            if beneficiary is None or beneficiary.id in seen:
                return Decision(False, REFUSE_ON_BEHALF, f"{current.id}: on-behalf-of chain is broken or circular")
            seen.add(beneficiary.id)
            why = qualifies(policy, beneficiary)
            if why is not None:
                return Decision(False, REFUSE_ON_BEHALF, f"{recipient.id} asks on behalf of {beneficiary.id}: {why.reason}")
            if beneficiary.purpose in policy.purposes.refused or beneficiary.purpose not in policy.purposes.allowed:
                return Decision(False, REFUSE_ON_BEHALF,
                                f"{recipient.id} asks on behalf of {beneficiary.id} (purpose {beneficiary.purpose})")
            current = beneficiary
        return Decision(True, ALLOW, f"{recipient.id}: {recipient.kind.value} agency in {recipient.jurisdiction}")
    except Exception as err:  # fail closed: a bug in a rule must not share anything
        return Decision(False, REFUSE_POLICY_ERROR, f"{type(err).__name__}: {err}")


@dataclass(frozen=True)
class DecisionTable:
    """Every (operating agency, recipient) decision, computed once when the gate starts."""

    policy_label: str
    recipients: tuple[str, ...]
    decisions: dict[tuple[str, str], Decision]
    # owner -> recipients allowed, in registry order (the hot path of the gate)
    allowed_by_owner: dict[str, tuple[str, ...]]

    def decide(self, owner_id: str, recipient_id: str) -> Decision:
        d = self.decisions.get((owner_id, recipient_id))
        if d is None:
            return Decision(False, REFUSE_UNKNOWN_AGENCY, f"no decision for ({owner_id}, {recipient_id})")
        return d


def compile_decisions(policy: Policy, registry: Registry) -> DecisionTable:
    recipients = tuple(a.id for a in registry.agencies)
    owners = sorted({c.agency for c in registry.cameras} | set(recipients))
    decisions: dict[tuple[str, str], Decision] = {}
    allowed: dict[str, tuple[str, ...]] = {}
    for owner in owners:
        ok = []
        for r in recipients:
            d = evaluate(policy, registry, owner, r)
            decisions[(owner, r)] = d
            if d.allowed:
                ok.append(r)
        allowed[owner] = tuple(ok)
    return DecisionTable(policy.label, recipients, decisions, allowed)
