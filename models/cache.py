"""Where pulled model files live, and how a cached file is trusted.

The runtime (``models.serving``) reads it; the lifecycle (pull, import,
conversion) writes it.

Layout: ``<model_cache>/<name>/<version>/<file>``, exactly one model file per
version directory, plus ``downloads/`` (verified archives, kept so that a pull
can resume or repair without the network) and ``cards/`` (model cards).

Trusting a cached file: a file is installed only after its sha256 matched, and
beside it goes a hidden stamp ``.<file>.verified`` recording that sha256 and the
file's size, mtime, ctime, inode and device. A later check whose stat matches the
stamp skips re-hashing. Any write to the file, a replacement, or even restoring
its mtime with ``touch``/``utime`` changes its ctime (which user space cannot
set), so a tampered file misses the stamp, is re-hashed in full and fails with
``CachedFileTampered``. The stamp is a cache of a verification, not a signature:
someone who can rewrite both the file and its stamp defeats it; ``verify(...,
full=True)`` re-hashes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import CachedFileTampered, ModelHashMismatch, ModelNotPulled

DOWNLOADS = "downloads"
CARDS = "cards"
RESERVED_NAMES = frozenset({DOWNLOADS, CARDS})
_CHUNK = 1 << 20


def version_dir(cache_root: Path, name: str, version: str) -> Path:
    return cache_root / name / version


def downloads_dir(cache_root: Path) -> Path:
    return cache_root / DOWNLOADS


def model_file(cache_root: Path, name: str, version: str, sha256: str) -> Path:
    """The verified file of model ``name@version``: what a worker loads for a ModelChoice."""
    directory = version_dir(cache_root, name, version)
    files = visible_files(directory)
    if len(files) != 1:
        raise ModelNotPulled([directory])
    return check_file(files[0], sha256)


def visible_files(directory: Path) -> list[Path]:
    """Files of a cache directory, without stamps and half-written temporaries."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def check_file(path: Path, sha256: str, full: bool = False) -> Path:
    """Return ``path`` if its content has ``sha256``; cheap when its stamp still holds.

    ``full`` ignores the stamp and re-hashes.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelNotPulled([path]) from None
    if not full and _read_stamp(path) == _stamp(stat, sha256):
        return path
    actual = _hash_and_stamp(path, sha256)
    if actual != sha256:
        raise CachedFileTampered(path, sha256, actual)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install(stream: BinaryIO, dest: Path, sha256: str, what: str) -> None:
    """Copy ``stream`` to ``dest`` atomically, only if its content has ``sha256``.

    Readers (other workers, a concurrent pull) see the old file or the complete
    new one, never a partial write.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            inode = os.fstat(out.fileno()).st_ino
        actual = digest.hexdigest()
        if actual != sha256:
            raise ModelHashMismatch(what, sha256, actual)
        tmp.chmod(0o444)  # model files are never edited in place
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    stat = dest.stat()
    if stat.st_ino == inode:  # still our file, not one a concurrent pull put there
        _write_stamp(dest, _stamp(stat, sha256))


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stamp(stat: os.stat_result, sha256: str) -> dict:
    return {
        "sha256": sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "ino": stat.st_ino,
        "dev": stat.st_dev,
    }


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, stamp: dict) -> None:
    stamp_file = _stamp_path(path)
    tmp = stamp_file.with_name(f"{stamp_file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, stamp_file)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache still verifies, just not cheaply


def _hash_and_stamp(path: Path, expected: str) -> str:
    """Hash ``path``; when it matches and nothing changed it meanwhile, stamp it."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        before = os.fstat(f.fileno())
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
        after = os.fstat(f.fileno())
    actual = digest.hexdigest()
    if actual == expected and _stamp(before, expected) == _stamp(after, expected):
        _write_stamp(path, _stamp(after, expected))
    return actual
