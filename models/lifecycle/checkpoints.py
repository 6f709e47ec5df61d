"""Models from published checkpoints outside the package registries, and their fusions.

``pull_checkpoints`` makes each checkpoint of models/sources.py CHECKPOINT_SOURCES
present: taken from a mirror directory (``<mirror>/<source id>/<file>``, for
air-gapped installs) or, only when asked (``upstream``), downloaded from its
upstream URL -- they are outside the package registries -- checked by its
sha256, converted to ONNX without PyTorch (models/converters), checked again by
the sha256 of the conversion, installed in the model cache and registered with
its signature. Then each fusion (FUSIONS) whose members are all present is
built from the members' files, registered, and takes the ``production`` alias
from the manifest default it is preferred over (never from a person's choice).
A checkpoint that cannot be had is one line of the report; nothing else fails.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from models.cache import check_file, downloads_dir, install, sha256_of, version_dir
from models.errors import CachedFileTampered, ModelHashMismatch, ModelNotPulled

from .converters import CheckpointError, ConversionError, convert_file
from .converters.fusion import fused_onnx, fused_signature
from .registry import PRODUCTION, prefer_manifest_alias, register_manifest_version, signature_of
from .sources import (
    CHECKPOINT_SOURCES,
    FUSIONS,
    SIGNATURES,
    Checkpoint,
    CheckpointSource,
    Fusion,
)

Progress = Callable[[str], None]
DOWNLOAD_TIMEOUT_S = 30


@dataclass
class CheckpointReport:
    registered: list[str] = field(default_factory=list)  # name@version present and registered
    unavailable: list[str] = field(default_factory=list)  # one line per model that is not

    def summary(self) -> str:
        return f"{len(self.registered)} converted model(s) present" + (
            f", {len(self.unavailable)} unavailable" if self.unavailable else ""
        )


def pull_checkpoints(
    engine: Engine,
    cache_root: Path,
    mirror: Path | None = None,
    upstream: bool = False,
    sources: tuple[CheckpointSource, ...] = CHECKPOINT_SOURCES,
    fusions: tuple[Fusion, ...] = FUSIONS,
    progress: Progress = print,
) -> CheckpointReport:
    """Fetch, check, convert and register every checkpoint; then build the fusions.

    With ``mirror`` only the mirror is read (no network); with ``upstream`` the pinned URLs;
    with neither, only what an earlier pull kept.
    """
    report = CheckpointReport()
    present: dict[str, tuple[str, Path]] = {}  # model name -> (ref, verified ONNX file)
    for source in sources:
        for checkpoint in source.files:
            try:
                path = _converted(cache_root, source, checkpoint, mirror, upstream, progress)
            except (_Unavailable, CheckpointError, ConversionError, ModelHashMismatch) as why:
                line = f"{checkpoint.name}: not available ({why})"
                report.unavailable.append(line)
                progress(line)
                continue
            ref, _ = register_manifest_version(
                engine,
                path,
                SIGNATURES[checkpoint.name],
                task=checkpoint.task,
                name=checkpoint.name,
                version=source.version,
                sha256=checkpoint.converted_sha256,
                source_registry="url",
                source_spec=f"{checkpoint.url} (sha256 {checkpoint.sha256})",
                source_member=f"converted by idflow's {checkpoint.architecture} converter",
                licence=source.licence,
                caveats=source.caveats,
            )
            present[checkpoint.name] = ref, path
            report.registered.append(ref)
    for fusion in fusions:
        missing = [name for name in fusion.members if name not in present]
        if missing:
            line = f"{fusion.name}: not built (members not available: {', '.join(missing)})"
            report.unavailable.append(line)
            progress(line)
            continue
        try:
            report.registered.append(_fuse(engine, cache_root, fusion, present, sources, progress))
        except (ConversionError, ModelHashMismatch) as why:
            line = f"{fusion.name}: not built ({why})"
            report.unavailable.append(line)
            progress(line)
    return report


class _Unavailable(Exception):
    """The checkpoint is neither cached, nor in the mirror, nor downloadable."""


def _converted(
    cache_root: Path,
    source: CheckpointSource,
    checkpoint: Checkpoint,
    mirror: Path | None,
    upstream: bool,
    progress: Progress,
) -> Path:
    """The verified ONNX conversion of ``checkpoint`` in the cache, made if missing."""
    target = version_dir(cache_root, checkpoint.name, source.version) / (
        Path(checkpoint.filename).stem + ".onnx"
    )
    try:
        return check_file(target, checkpoint.converted_sha256)
    except ModelNotPulled:
        pass
    except CachedFileTampered as tampered:
        progress(f"{checkpoint.name}: cached {tampered.path} was modified: converting again")
    original = _checkpoint_file(cache_root, source, checkpoint, mirror, upstream, progress)
    with tempfile.TemporaryDirectory(prefix="idflow-convert-") as scratch:
        onnx_file = convert_file(
            original, checkpoint.sha256, checkpoint.architecture, Path(scratch)
        )
        with onnx_file.open("rb") as stream:
            install(
                stream,
                target,
                checkpoint.converted_sha256,
                what=f"the ONNX conversion of {checkpoint.filename} (another onnx version?)",
            )
    progress(f"{checkpoint.name}: converted {checkpoint.filename} to {target.name}, sha256 ok")
    return target


def _checkpoint_file(
    cache_root: Path,
    source: CheckpointSource,
    checkpoint: Checkpoint,
    mirror: Path | None,
    upstream: bool,
    progress: Progress,
) -> Path:
    """The checkpoint, verified: kept from an earlier pull, from the mirror, or downloaded."""
    kept = downloads_dir(cache_root) / source.id / source.version / checkpoint.filename
    try:
        return check_file(kept, checkpoint.sha256)
    except (ModelNotPulled, CachedFileTampered):
        kept.unlink(missing_ok=True)
    if mirror is not None:
        found = Path(mirror) / source.id / checkpoint.filename
        if not found.is_file():
            raise _Unavailable(f"no {source.id}/{checkpoint.filename} in mirror {mirror}")
        with found.open("rb") as stream:
            install(stream, kept, checkpoint.sha256, what=f"{found}")
        return kept
    if not upstream:
        raise _Unavailable("outside the package registries: pull with --mirror DIR or --upstream")
    progress(f"{checkpoint.name}: downloading {checkpoint.url} ...")
    try:
        with urllib.request.urlopen(checkpoint.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            install(response, kept, checkpoint.sha256, what=checkpoint.url)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _Unavailable(
            f"cannot download {checkpoint.url}: {reason}; use --mirror DIR"
        ) from None
    return kept


def _fuse(
    engine: Engine,
    cache_root: Path,
    fusion: Fusion,
    present: dict[str, tuple[str, Path]],
    sources: tuple[CheckpointSource, ...],
    progress: Progress,
) -> str:
    members = [present[name][0] for name in fusion.members]
    files = [present[name][1] for name in fusion.members]
    signatures = [signature_of(engine, ref) for ref in members]
    signature = fused_signature(
        [
            (f"{ref} {sha256_of(file)}", s)
            for ref, file, s in zip(members, files, signatures, strict=True)
        ]
    )
    target = version_dir(cache_root, fusion.name, fusion.version) / f"{fusion.name}.onnx"
    try:
        check_file(target, fusion.sha256)
    except (ModelNotPulled, CachedFileTampered):
        model = fused_onnx([(f.read_bytes(), s) for f, s in zip(files, signatures, strict=True)])
        with tempfile.TemporaryDirectory(prefix="idflow-fuse-") as scratch:
            built = Path(scratch) / target.name
            built.write_bytes(model)
            with built.open("rb") as stream:
                install(stream, target, fusion.sha256, what=f"the fused graph of {fusion.name}")
        progress(f"{fusion.name}: fused {', '.join(members)}")
    licence = {s.licence for s in sources if any(f.name in fusion.members for f in s.files)}
    ref, _ = register_manifest_version(
        engine,
        target,
        signature,
        task="liveness",
        name=fusion.name,
        version=fusion.version,
        sha256=fusion.sha256,
        source_registry="fusion",
        source_spec=f"mean of the softmax outputs of {', '.join(members)}",
        licence=", ".join(sorted(licence)),
        caveats=(
            "A fusion of the member versions listed in its signature; see their cards. "
            f"Production by default when its checkpoints are available, because: {fusion.why}."
        ),
    )
    if prefer_manifest_alias(
        engine,
        "liveness",
        PRODUCTION,
        ref,
        over=fusion.prefer_over,
        reason=f"manifest default: {fusion.why}",
    ):
        progress(f"liveness@{PRODUCTION} -> {ref} (preferred over {fusion.prefer_over})")
    return ref
