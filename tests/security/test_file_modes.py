"""Everything idflow writes under IDFLOW_HOME is readable by its owner only (0700 / 0600)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from security.keys import BLOB, new_key, parse_inline
from settings import PROJECT_ROOT
from store.blobs import EncryptedBlobStore
from store.engine import get_engine
from store.envelope import DataKeys


def shared_with_others(home: Path) -> list[str]:
    """Paths under ``home`` (and ``home`` itself) that group or others may access."""
    paths = [home, *home.rglob("*")]
    return [
        f"{path.relative_to(home.parent)} {stat.S_IMODE(path.lstat().st_mode):o}"
        for path in paths
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    ]


def test_the_client_library_writes_private_files_whatever_the_callers_umask(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    old = os.umask(0o022)  # a backend service's usual umask
    try:
        engine = get_engine(f"sqlite:///{home / 'idflow.db'}")
        keys = DataKeys(engine, parse_inline(BLOB, f"m1:{new_key()}", "test"), timedelta(days=1))
        EncryptedBlobStore(home / "blobs", keys).put("v-1", b"portrait", "image/jpeg")
    finally:
        os.umask(old)
    assert (home / "idflow.db-wal").exists()
    assert shared_with_others(home) == []


def test_idflow_commands_keep_their_home_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "IDFLOW_HOME": str(home)}
    env.pop("IDFLOW_PAYLOAD_KEYS", None)
    env.pop("IDFLOW_BLOB_KEYS", None)
    subprocess.run(
        [sys.executable, "-m", "cli", "encryption", "init"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "-m", "cli", "keys", "init"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    assert any(home.rglob("*.json"))
    assert shared_with_others(home) == []
