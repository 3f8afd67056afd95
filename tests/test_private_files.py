"""Stores of plate reads are created readable by their owner only (mode 0600, whatever the umask),
their SQLite -wal/-shm files too; a file that exists keeps its mode."""

from __future__ import annotations

import os
import stat

import pytest

from edge.agency.receiver import AgencyInbox
from edge.private_files import create_private


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # the usual default: files 0644, readable by every local user
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_agency_inbox_and_its_wal_are_private(tmp_path, open_umask):
    inbox = AgencyInbox(tmp_path / "inbox.db")
    inbox.add([("r1", "7ABC123", "cam-1", "sac-pd", "2026-11-28T00:00:00+00:00", "2026-11-28T00:00:01+00:00",
                "ca-sb34@1", "allow:x", b"{}")], [])
    files = [tmp_path / n for n in ("inbox.db", "inbox.db-wal", "inbox.db-shm")]
    assert all(f.exists() for f in files)
    assert [mode(f) for f in files] == [0o600] * 3
    inbox.close()


def test_the_audit_log_and_the_outbox_are_private(tmp_path, open_umask):
    from edge.policy.audit import AuditRecord, SQLiteAuditStore
    from edge.transport.outbox import Outbox

    audit = SQLiteAuditStore(tmp_path / "audit.db")
    audit.append([AuditRecord("2026-11-28T00:00:00+00:00", "g", "cam-1/r1", "r1", "cam-1", "sac-pd", "7ABC123",
                              "2026-11-28T00:00:00+00:00", "alpr/raw/cam-1", "p@1", "decided", "[]")])
    outbox = Outbox(tmp_path / "outbox.db")
    files = [tmp_path / n for n in ("audit.db", "audit.db-wal", "outbox.db", "outbox.db-wal")]
    assert [mode(f) for f in files] == [0o600] * 4
    audit.close()
    outbox.close()


def test_plate_crops_are_private(tmp_path, open_umask):
    from edge.node.config import build_config
    from edge.node.pipeline import EdgeNode, MemorySink, crop_axis_aligned
    from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource

    src = ScriptedSource(n_vehicles=2)
    config = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path),
                          save_crops=True, crop_min_free_mb=0)
    sink = MemorySink()
    EdgeNode(config, src, ColourKeyedDetector(), ColourKeyedOCR(src.vehicles), sink, cropper=crop_axis_aligned).run()
    crops = [tmp_path / e.crop_ref for e in sink.events]
    assert len(crops) == 2 and [mode(c) for c in crops] == [0o600] * 2


def test_an_existing_file_keeps_its_mode(tmp_path, open_umask):
    shared = tmp_path / "shared.db"
    shared.touch(mode=0o640)
    os.chmod(shared, 0o640)  # an operator's choice (a group of auditors)
    create_private(shared)
    assert mode(shared) == 0o640


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(OSError, match=r"nope/inbox.db: cannot open the agency inbox: No such file or directory"):
        AgencyInbox(tmp_path / "nope" / "inbox.db")
