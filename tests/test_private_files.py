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


def test_an_existing_file_keeps_its_mode(tmp_path, open_umask):
    shared = tmp_path / "shared.db"
    shared.touch(mode=0o640)
    os.chmod(shared, 0o640)  # an operator's choice (a group of auditors)
    create_private(shared)
    assert mode(shared) == 0o640


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(OSError, match=r"nope/inbox.db: cannot open the agency inbox: No such file or directory"):
        AgencyInbox(tmp_path / "nope" / "inbox.db")
