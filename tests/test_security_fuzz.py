"""Runs the atheris fuzz target (tests/fuzz/fuzz_gate.py) for a few thousand inputs when atheris is
installed (it is optional: `pip install atheris`); longer campaigns: see the target's docstring."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TARGET = os.path.join(os.path.dirname(__file__), "fuzz", "fuzz_gate.py")


def test_fuzz_target_short_run(tmp_path):
    pytest.importorskip("atheris", reason="atheris (optional fuzzing engine) is not installed")
    r = subprocess.run([sys.executable, TARGET, "-runs=4000", "-seed=1", f"-artifact_prefix={tmp_path}/"],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Done 4000 runs" in r.stderr
