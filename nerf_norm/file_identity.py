"""What identifies an input file, so that a cache or a resumed run is never mixed with a replaced input: the hash
of its bytes. Timestamps cannot tell: ``cp -p``, ``rsync -a`` and ``tar x`` restore an older modification time,
and a file replaced within the same clock tick as it was read keeps even its change time and inode."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

__all__ = ["content_digest"]


def content_digest(path: Union[str, Path, None]) -> Optional[str]:
    """SHA-256 of the file's bytes (hex), or ``None`` when ``path`` is not a file (e.g. bundled sample data)."""
    if path is None or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
