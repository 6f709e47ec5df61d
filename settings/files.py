"""Files and folders under ``IDFLOW_HOME`` that only their owner may read (0600 / 0700).

The ``idflow`` command sets umask 077 for everything it and its children
write; these helpers hold for code that runs inside another program (the
client library in a backend service, whose umask is not ours).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` and missing parents created 0700; an existing ``path`` tightened to 0700."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):  # mkdir(parents=True) would give parents the umask's mode
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new or truncated file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
