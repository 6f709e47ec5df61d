"""The model registry: every model version, and movable aliases per task.

A model version (``name@version``) is immutable: its file is pinned by sha256
and lives in the model cache. An alias (``production``, ``candidate``, ...) is
a movable name per task that resolves to exact versions; every move is
appended to the alias history, which the database refuses to rewrite. Workflows resolve
their pins to ``ModelChoice`` once, at start, and record the exact versions.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from domain.contracts import ModelChoice
from domain.enums import ModelTask
from domain.errors import ModelUnavailable
from domain.signatures import ModelSignature, SignatureError, check_tensors
from models.cache import RESERVED_NAMES, install, sha256_of, version_dir, visible_files
from models.errors import ModelHashMismatch
from store.append_only import append_only
from store.audit import utcnow
from store.engine import ensure_tables

from .evaluations import EvaluationRecord, evidence
from .pull import verify
from .sources import DEFAULT_THRESHOLDS, SIGNATURES, SOURCES, Source, model_path
from .targets import TARGETS, TaskTargets

PRODUCTION = "production"
MANIFEST_ACTOR = "manifest"  # who set the aliases seeded from models/lifecycle/sources.py
CANARY = "canary"  # decides a share of verifications (models.lifecycle.rollout)
SHADOW = "shadow"  # scores every verification beside production, decides nothing
# Aliases that decide verifications: they move only to a version with evidence.
DECIDING_ALIASES = (PRODUCTION, CANARY)
MAX_REASON = 300
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class RegistryError(Exception):
    """A registration the registry refuses."""


class VersionConflict(RegistryError):
    """name@version already exists with other content, or the name belongs to another task."""


class InvalidRegistration(RegistryError):
    """Bad task, name, version, alias, signature or model file."""


class PromotionRefused(RegistryError):
    """A deciding alias may only move to a version whose evaluation meets the task's targets."""


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(index=True, max_length=32)
    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    filename: str = Field(max_length=200)  # the file in <model_cache>/<name>/<version>/
    sha256: str = Field(max_length=64)
    source_registry: str = Field(max_length=16)  # "npm", "pypi" or "file" (imported)
    source_spec: str = Field(max_length=300)  # package spec, or where an import came from
    source_member: str = Field(default="", max_length=300)  # path inside the package archive
    licence: str = Field(max_length=100)
    caveats: str = Field(default="", max_length=2000)
    input_spec: str = Field(default="", max_length=1000)  # tensors, read from the ONNX file
    preprocessing: str = Field(max_length=64)  # the signature's short label
    thresholds: dict[str, float] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ModelAlias(SQLModel, table=True):
    """Where an alias of a task points now."""

    __tablename__ = "model_aliases"

    task: str = Field(primary_key=True, max_length=32)
    alias: str = Field(primary_key=True, max_length=32)
    version_id: int = Field(foreign_key="model_versions.id")
    moved_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    moved_by: str = Field(max_length=200)


class ModelSignatureRow(SQLModel, table=True):
    """The signature of a version (verification/signatures.py): immutable like the version."""

    __tablename__ = "model_signatures"

    version_id: int = Field(foreign_key="model_versions.id", primary_key=True)
    signature: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


@append_only
class AliasMove(SQLModel, table=True):
    """One move of an alias; the database refuses UPDATE and DELETE on the history."""

    __tablename__ = "model_alias_history"

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(index=True, max_length=32)
    alias: str = Field(max_length=32)
    target: str = Field(max_length=100)  # name@version
    previous: str | None = Field(default=None, max_length=100)
    moved_by: str = Field(max_length=200)
    moved_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    note: str = Field(default="", max_length=500)


# --- Resolving pins ------------------------------------------------------------

_TASK_NAMES = [task.value for task in ModelTask]  # as error messages list them


def _session(engine: Engine, **options) -> Session:
    """A session on ``engine``, the registry's tables created on first use."""
    ensure_tables(engine, ModelVersion, ModelAlias, AliasMove, EvaluationRecord, ModelSignatureRow)
    return Session(engine, **options)


def resolve(engine: Engine, task: str, pin: str) -> ModelChoice:
    """The exact version for ``pin``: an alias of ``task`` or ``name@version``."""
    with _session(engine) as session:
        return _resolve(session, task, pin)


def resolve_all(engine: Engine, pins: dict[str, str]) -> dict[ModelTask, ModelChoice]:
    """A choice for every task: its pin if given, else the ``production`` alias."""
    unknown = sorted(set(pins) - set(ModelTask))
    if unknown:
        raise ModelUnavailable(f"pins name unknown tasks {unknown}; tasks are {_TASK_NAMES}")
    with _session(engine) as session:
        return {task: _resolve(session, task, pins.get(task, PRODUCTION)) for task in ModelTask}


def _resolve(session: Session, task: str, pin: str) -> ModelChoice:
    if task not in _TASK_NAMES:
        raise ModelUnavailable(f"unknown model task {task!r}; tasks are {_TASK_NAMES}")
    if "@" in pin:
        name, _, version = pin.partition("@")
        row = _find(session, name, version)
        if row is None:
            raise ModelUnavailable(f"model {pin} is not registered")
        if row.task != task:
            raise ModelUnavailable(f"model {pin} is a {row.task} model, not a {task} model")
        return _choice(session, row, alias=None)
    alias = session.get(ModelAlias, (task, pin))
    if alias is None:
        known = session.exec(select(ModelAlias.alias).where(ModelAlias.task == task)).all()
        raise ModelUnavailable(
            f"no alias {pin!r} for task {task!r} (its aliases: {sorted(known) or 'none'}); "
            f"pin an alias or name@version"
        )
    return _choice(session, session.get(ModelVersion, alias.version_id), alias=pin)


def _choice(session: Session, row: ModelVersion, alias: str | None) -> ModelChoice:
    return ModelChoice(
        task=ModelTask(row.task),
        name=row.name,
        version=row.version,
        sha256=row.sha256,
        accept=row.thresholds.get("accept"),
        reject=row.thresholds.get("reject"),
        alias=alias,
        signature=_signature(session, row),
    )


def _signature(session: Session, row: ModelVersion) -> ModelSignature | None:
    """The stored signature; None for a version imported before signatures existed."""
    stored = session.get(ModelSignatureRow, row.id)
    return ModelSignature.from_dict(stored.signature) if stored else None


def signature_of(engine: Engine, ref: str) -> ModelSignature | None:
    with _session(engine) as session:
        row = _find(session, *ref.partition("@")[::2])
        if row is None:
            raise ModelUnavailable(f"model {ref} is not registered")
        return _signature(session, row)


def _find(session: Session, name: str, version: str) -> ModelVersion | None:
    query = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    return session.exec(query).first()


# --- Aliases -------------------------------------------------------------------


def set_alias(
    engine: Engine,
    task: str,
    alias: str,
    ref: str,
    moved_by: str,
    note: str = "",
    *,
    force: bool = False,
    reason: str = "",
    targets: dict[ModelTask, TaskTargets] = TARGETS,
) -> ModelChoice:
    """Point ``alias`` of ``task`` at the exact version ``ref`` (name@version).

    A deciding alias (production, canary) of a task with targets moves only to
    a version with a recorded evaluation that meets them now; the move's note
    names that evaluation and its labelled set. ``force`` overrides the gate and
    needs a ``reason``, which the alias history keeps.
    """
    if not _ALIAS.fullmatch(alias):
        raise InvalidRegistration(f"alias {alias!r} must match {_ALIAS.pattern}")
    if "@" not in ref:
        raise InvalidRegistration(f"an alias points at an exact name@version, not {ref!r}")
    if not moved_by.strip():
        raise InvalidRegistration("say who moves the alias (moved_by)")
    with _session(engine) as session:
        target = _resolve(session, task, ref)
        row = _find(session, target.name, target.version)
        current = session.get(ModelAlias, (task, alias))
        previous = session.get(ModelVersion, current.version_id).ref if current else None
        choice = _choice(session, row, alias)
        if previous == ref:
            return choice
        note = _promotion_note(session, row, alias, note, force, reason, targets.get(task))
        now = utcnow()
        if current is None:
            current = ModelAlias(task=task, alias=alias, version_id=row.id, moved_by=moved_by)
        current.version_id, current.moved_at, current.moved_by = row.id, now, moved_by
        session.add(current)
        session.add(
            AliasMove(
                task=task,
                alias=alias,
                target=ref,
                previous=previous,
                moved_by=moved_by,
                moved_at=now,
                note=note,
            )
        )
        session.commit()
        return choice


def _promotion_note(
    session: Session,
    row: ModelVersion,
    alias: str,
    note: str,
    force: bool,
    reason: str,
    targets: TaskTargets | None,
) -> str:
    """The alias history note of a move, after the evidence gate of deciding aliases."""
    if alias not in DECIDING_ALIASES or not targets:
        return note
    record, results = evidence(session, row.id, targets)
    if record is not None:
        return _joined(f"evidence: evaluation {record.summary()}", note)
    if not force:
        why = (
            "its newest evaluation misses: "
            + "; ".join(r.describe() for r in results if not r.passed)
            if results
            else "it has no recorded evaluation"
        )
        raise PromotionRefused(
            f"{row.task}@{alias} cannot move to {row.ref}: {why}. Evaluate it on a labelled set "
            f"(idflow models evaluate {row.task} SET --model {row.ref}), or override with "
            f'--force --reason "..."'
        )
    check_override_reason(reason)
    return _joined(f"OVERRIDE without a passing evaluation: {reason.strip()}", note)


def check_override_reason(reason: str) -> None:
    if not reason.strip():
        raise InvalidRegistration('an override (--force) needs --reason "why"')
    if len(reason) > MAX_REASON:
        raise InvalidRegistration(f"keep the override reason under {MAX_REASON} characters")


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)[:500]


def alias_history(
    engine: Engine, task: str | None = None, alias: str | None = None
) -> list[AliasMove]:
    """Every alias move, oldest first."""
    query = select(AliasMove).order_by(AliasMove.id)
    if task is not None:
        query = query.where(AliasMove.task == task)
    if alias is not None:
        query = query.where(AliasMove.alias == alias)
    with _session(engine) as session:
        return list(session.exec(query).all())


def current_aliases(engine: Engine) -> dict[str, list[str]]:
    """Aliases by the name@version they point at now."""
    query = (
        select(ModelAlias.alias, ModelVersion.name, ModelVersion.version)
        .join(ModelVersion, ModelAlias.version_id == ModelVersion.id)
        .order_by(ModelAlias.alias)
    )
    found: dict[str, list[str]] = {}
    with _session(engine) as session:
        for alias, name, version in session.exec(query).all():
            found.setdefault(f"{name}@{version}", []).append(alias)
    return found


# --- Versions ------------------------------------------------------------------


def list_versions(engine: Engine, task: str | None = None) -> list[ModelVersion]:
    """Registered versions in task order, oldest first within a task."""
    query = select(ModelVersion)
    if task is not None:
        query = query.where(ModelVersion.task == task)
    with _session(engine) as session:
        rows = list(session.exec(query).all())
    order = {name: i for i, name in enumerate(ModelTask)}
    return sorted(rows, key=lambda r: (order.get(r.task, len(order)), r.created_at, r.id))


def get_version(engine: Engine, ref: str) -> ModelVersion:
    name, _, version = ref.partition("@")
    with _session(engine) as session:
        row = _find(session, name, version)
    if row is None:
        raise ModelUnavailable(f"model {ref} is not registered")
    return row


def record_metrics(
    engine: Engine, name: str, version: str, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Merge measured metrics (top-level keys replace) into a version; returns them all."""
    with _session(engine) as session:
        row = _find(session, name, version)
        if row is None:
            raise ModelUnavailable(f"model {name}@{version} is not registered")
        row.metrics = {**row.metrics, **metrics}  # a new dict, so the JSON column is saved
        session.add(row)
        session.commit()
        return dict(row.metrics)


def register_pulled(
    engine: Engine, cache_root: Path, sources: tuple[Source, ...] = SOURCES
) -> list[str]:
    """Register every manifest model in the cache; returns the refs new to the registry.

    Idempotent and safe to run from several processes at once. A model's default
    alias (``production``) is set only when its task has no such alias yet, so a
    moved alias stays where it was moved.
    """
    verify(cache_root, sources)
    added: list[str] = []
    for source in sources:
        for model in source.files:
            ref, new = register_manifest_version(
                engine,
                model_path(cache_root, source, model),
                SIGNATURES[model.name],
                task=model.task,
                name=model.name,
                version=source.version,
                sha256=model.sha256,
                source_registry=source.registry,
                source_spec=source.spec,
                source_member=model.member,
                licence=source.licence,
                caveats=source.caveats,
            )
            if new:
                added.append(ref)
            if model.alias is not None:
                _seed_alias(engine, model.task, model.alias, ref)
    return added


def register_manifest_version(
    engine: Engine, path: Path, signature: ModelSignature, **fields: Any
) -> tuple[str, bool]:
    """Register a manifest model whose file is verified in the cache at ``path``, with its
    signature (checked against the graph) and the manifest's thresholds: (its ref, whether it
    is new). Idempotent and safe to run from several processes at once."""
    row = ModelVersion(
        filename=path.name,
        input_spec=_checked_input_spec(path, fields["sha256"], signature),
        preprocessing=signature.label(),
        thresholds=dict(DEFAULT_THRESHOLDS.get(fields["name"], {})),
        **fields,
    )
    added = _insert_once(engine, row)
    _store_signature(engine, row.ref, signature)
    return row.ref, added


def register_version(
    engine: Engine,
    cache_root: Path,
    file: Path,
    *,
    task: str,
    name: str,
    version: str,
    sha256: str,
    licence: str,
    signature: ModelSignature,
    caveats: str = "",
    source: str = "",
    thresholds: dict[str, float] | None = None,
    alias: str | None = None,
    moved_by: str = "",
    force: bool = False,
    reason: str = "",
) -> ModelChoice:
    """Import a model file as a new version (checked against ``sha256``), optionally aliased.

    The file is copied into the model cache; ``source`` says where it came from
    (default: its file name). The ``signature`` must fit the ONNX graph's tensors.
    Versions are immutable: re-importing the same name@version with the same
    sha256 is a no-op, with another is refused.
    A new version has no evaluation yet: a deciding alias needs ``force`` and a
    ``reason`` (checked before anything is stored).
    """
    _check_new_version(task, name, version, thresholds)
    if alias in DECIDING_ALIASES and TARGETS.get(task):
        if not force:
            raise PromotionRefused(
                f"a new version has no evaluation yet: import it without --alias {alias} (or "
                f"as candidate), evaluate it, then move {alias}; or override with "
                f'--force --reason "..."'
            )
        check_override_reason(reason)
    actual = sha256_of(file)
    if actual != sha256:
        raise ModelHashMismatch(f"imported file {file.name}", sha256, actual)
    dest = version_dir(cache_root, name, version) / file.name
    others = [p.name for p in visible_files(dest.parent) if p != dest]
    if others:
        raise VersionConflict(f"the cache already holds {others} for {name}@{version}")
    row = ModelVersion(
        task=task,
        name=name,
        version=version,
        filename=file.name,
        sha256=sha256,
        source_registry="file",
        source_spec=source or f"imported file {file.name}",
        licence=licence,
        caveats=caveats,
        preprocessing=signature.label(),
        thresholds=dict(thresholds or {}),
    )
    with _session(engine) as session:
        owner = session.exec(select(ModelVersion.task).where(ModelVersion.name == name)).first()
        existing = _find(session, name, version)
    if owner is not None and owner != task:
        raise VersionConflict(f"model name {name!r} belongs to task {owner!r}, not {task!r}")
    if existing is not None:
        _check_same_content(existing, sha256)
    row.input_spec = _checked_input_spec(file, sha256, signature)
    with file.open("rb") as stream:
        install(stream, dest, sha256, what=f"imported file {file.name}")
    _insert_once(engine, row)
    _store_signature(engine, row.ref, signature)
    if alias is not None:
        return set_alias(
            engine, task, alias, row.ref, moved_by, note="set on import", force=force, reason=reason
        )
    return resolve(engine, task, row.ref)


def _check_new_version(
    task: str, name: str, version: str, thresholds: dict[str, float] | None
) -> None:
    if task not in _TASK_NAMES:
        raise InvalidRegistration(f"unknown task {task!r}; tasks are {_TASK_NAMES}")
    if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise InvalidRegistration(
            f"model name {name!r} must match {_NAME.pattern} "
            f"and not be one of {sorted(RESERVED_NAMES)}"
        )
    if not _VERSION.fullmatch(version):
        raise InvalidRegistration(f"version {version!r} must match {_VERSION.pattern}")
    if thresholds and not set(thresholds) <= {"accept", "reject"}:
        raise InvalidRegistration(
            f"thresholds take 'accept' and 'reject', got {sorted(thresholds)}"
        )


def _insert_once(engine: Engine, row: ModelVersion) -> bool:
    """Insert a version unless name@version exists with the same sha256 (False then)."""
    with _session(engine, expire_on_commit=False) as session:
        existing = _find(session, row.name, row.version)
        if existing is None:
            session.add(row)
            try:
                session.commit()
                return True
            except IntegrityError:  # registered by a concurrent process meanwhile
                session.rollback()
                existing = _find(session, row.name, row.version)
        _check_same_content(existing, row.sha256)
        return False


def _check_same_content(existing: ModelVersion, sha256: str) -> None:
    if existing.sha256 != sha256:
        raise VersionConflict(
            f"{existing.ref} is registered with sha256 {existing.sha256}, not {sha256}; "
            f"versions are immutable: register a new version"
        )


def _seed_alias(engine: Engine, task: str, alias: str, ref: str) -> None:
    with _session(engine) as session:
        if session.get(ModelAlias, (task, alias)) is not None:
            return
        row = _find(session, *ref.split("@"))
        now = utcnow()
        session.add(
            ModelAlias(
                task=task, alias=alias, version_id=row.id, moved_at=now, moved_by=MANIFEST_ACTOR
            )
        )
        session.add(
            AliasMove(
                task=task,
                alias=alias,
                target=ref,
                moved_by=MANIFEST_ACTOR,
                moved_at=now,
                note="default alias from models/lifecycle/sources.py",
            )
        )
        try:
            session.commit()
        except IntegrityError:  # seeded by a concurrent process meanwhile
            session.rollback()


def prefer_manifest_alias(
    engine: Engine, task: str, alias: str, ref: str, over: str, reason: str
) -> bool:
    """Point ``alias`` at ``ref`` if it still points where the manifest put it, at a version of
    model ``over`` (a person's move is never undone); True when it moved. The manifest's
    choice is an override on the record (``reason``: the measured numbers behind it), like
    the default it replaces, which was seeded without an evaluation too."""
    with _session(engine) as session:
        current = session.get(ModelAlias, (task, alias))
        if current is not None:
            target = session.get(ModelVersion, current.version_id)
            if current.moved_by != MANIFEST_ACTOR or target.name != over or target.ref == ref:
                return False
    if current is None:
        _seed_alias(engine, task, alias, ref)
    else:
        set_alias(engine, task, alias, ref, moved_by=MANIFEST_ACTOR, force=True, reason=reason)
    return True


def _store_signature(engine: Engine, ref: str, signature: ModelSignature) -> None:
    """Store the signature of ``ref`` once (also for versions registered before signatures);
    a version keeps the signature it was registered with."""
    with _session(engine) as session:
        row = _find(session, *ref.split("@"))
        stored = session.get(ModelSignatureRow, row.id)
        if stored is not None:
            if ModelSignature.from_dict(stored.signature) != signature:
                raise VersionConflict(
                    f"{ref} is registered with another signature; versions are immutable: "
                    f"register a new version"
                )
            return
        session.add(ModelSignatureRow(version_id=row.id, signature=signature.to_dict()))
        try:
            session.commit()
        except IntegrityError:  # stored by a concurrent process meanwhile
            session.rollback()


def _checked_input_spec(path: Path, sha256: str, signature: ModelSignature) -> str:
    """The tensors of the ONNX file, after checking that ``signature`` fits them."""
    spec, inputs, outputs = _graph_tensors(path, sha256)
    try:
        check_tensors(signature, inputs, outputs)
    except SignatureError as mismatch:
        raise InvalidRegistration(f"{path.name}: {mismatch}") from None
    return spec


@functools.lru_cache(maxsize=64)
def _graph_tensors(path: Path, sha256: str) -> tuple[str, dict, dict]:
    """The model's input and output tensors, read from the ONNX file itself: a description,
    and the shapes by tensor name."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the faceplugin files log harmless initializer warnings
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise InvalidRegistration(f"{path.name} is not a loadable ONNX model: {error}") from None

    def describe(args: list) -> str:
        return ", ".join(
            f"{a.name} {a.type.removeprefix('tensor(').rstrip(')')}{a.shape}" for a in args
        )

    inputs, outputs = session.get_inputs(), session.get_outputs()
    return (
        f"inputs: {describe(inputs)}; outputs: {describe(outputs)}",
        {a.name: list(a.shape) for a in inputs},
        {a.name: list(a.shape) for a in outputs},
    )
