"""Coverage-guided fuzz target (atheris): the read parser, the gate's message handler, the registry
and policy loaders. Any exception other than the loaders' own errors, or a forward that breaks the
gate's invariants, is a finding.

    pip install atheris
    python tests/fuzz/fuzz_gate.py -runs=100000            # or -max_total_time=600
    python tests/fuzz/fuzz_gate.py crash-<hash>             # replay a finding
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import yaml

    from edge.policy.audit import SQLiteAuditStore
    from edge.policy.gate import Gate, GateConfig
    from edge.policy.policy import PolicyError, load_policy, parse_policy
    from edge.policy.registry import RegistryError, parse_registry
    from edge.schema import SchemaError, parse_read
    from edge.transport import mqtt as transport

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import ALLOWED_AGENCIES, TEST_REGISTRY  # noqa: E402

logging.disable(logging.WARNING)  # the gate logs every refused message: too loud at 10k messages/s
REGISTRY = parse_registry(TEST_REGISTRY)
TOPICS = ["alpr/raw/cam-1", "alpr/raw/cam-2", "alpr/raw/cam-3", "alpr/raw/cam-9", "alpr/raw/+", "alpr/raw/cam-1/x", ""]


class _Info:
    rc = 0

    def is_published(self):
        return True


class _Client:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, bytes(payload)))
        return _Info()

    def ack(self, mid, qos):
        pass


_tmp = tempfile.mkdtemp(prefix="fuzz-gate-")
GATE = Gate(REGISTRY, load_policy(), transport.parse_broker_url("mqtt://127.0.0.1:9"),
            SQLiteAuditStore(os.path.join(_tmp, "audit.db"), synchronous="OFF"), GateConfig(status_every_s=0))
GATE._client = GATE._fwd = _Client()  # noqa: SLF001  (raw in, forwards out)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 3)
    if target == 0:
        try:
            parse_read(fdp.ConsumeBytes(fdp.remaining_bytes()))
        except SchemaError:
            pass
    elif target == 1:
        topic = TOPICS[fdp.ConsumeIntInRange(0, len(TOPICS) - 1)]
        if not topic:
            topic = fdp.ConsumeUnicodeNoSurrogates(40)
        payload = fdp.ConsumeBytes(fdp.remaining_bytes())
        client = GATE._client  # noqa: SLF001
        n = len(client.published)
        GATE.process_batch([(1, 1, topic, payload)])
        for t, p in client.published[n:]:
            agency = t.split("/")[2]
            assert t == f"alpr/share/{agency}/reads" and agency in ALLOWED_AGENCIES, t
            parse_read(json.dumps(json.loads(p)["read"]))
    else:
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        try:
            data_ = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError):
            return
        try:
            (parse_registry if target == 2 else parse_policy)(data_)
        except (RegistryError, PolicyError):
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
