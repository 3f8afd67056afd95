"""The fixed train/validation split of the real development data.

A file is in validation when the first byte of sha256(file name) is below 20% of 256: stable across
machines and runs, independent of file order, and never trained on. Every model's card reports its
figures on this validation part (and, separately, on the training part).
"""

from __future__ import annotations

import hashlib

VAL_FRACTION = 0.2


def is_validation(file_name: str) -> bool:
    digest = hashlib.sha256(file_name.encode()).digest()
    return digest[0] < int(256 * VAL_FRACTION)


def split(file_names):
    """Return (train, val) lists, preserving the input order."""
    train, val = [], []
    for f in file_names:
        (val if is_validation(f) else train).append(f)
    return train, val
