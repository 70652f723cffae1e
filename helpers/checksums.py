"""File checksums: the SHA-256 that manifests, model folders and the builders record.

A run manifest hashes its data files, a model folder's ``SHA256SUMS`` is checked before it loads, and the builders
record what they wrote: all with :func:`sha256`, read in 1 MiB chunks so a multi-GB weight file never sits in memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
