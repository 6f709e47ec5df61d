"""Measure a model version on a labelled set; record the numbers and draw the plot.

- embed: cosine scores of genuine and impostor pairs; FNMR at FMR = 0, 1e-2 and
  1e-3 with the threshold that reaches each, FMR/FNMR at the version's accept
  and reject thresholds, and how many genuine pairs the quality check would
  send back to capture again (with the reasons).
- liveness: P(live) of bona fide and attack presentations; APCER and BPCER at
  the accept and reject thresholds (ISO/IEC 30107-3 terms), BPCER at APCER 5%,
  and APCER per attack kind.

Every image goes through the production face pipeline (decode, detect,
landmarks); an image without a usable face is a failure to acquire, counted
and left out of the rates. A target rate finer than one error in the set
(1/impostors, 1/attacks) cannot be measured: the metrics say how fine they go.

Each recorded evaluation is added to the version's history
(``models.evaluations``) with the set's name and digest, the task's targets
(``models.targets``) and whether it met them, and its own plot; the card lists
them all. A set or a model that cannot be evaluated raises one typed error
(``LabelledSetError``, ``EvaluationError``) whose message fits on one line.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from domain.contracts import FaceObservation, ModelChoice, QualityMeasures
from domain.enums import DECIDING_TASKS, QUALITY_TASKS, ImageRole, ModelTask
from domain.errors import InputRejected
from domain.quality_rules import assess_quality
from models.face import FaceModels, decode_image, face_embedding, liveness_score, observe_faces
from models.face.pipeline import cosine_similarity
from models.serving import ModelServer

from . import evaluations
from .cards import plot_path, write_cards
from .evaluations import EvaluationRecord
from .labelled_sets import (
    LabelledSetError,
    pairs_digest,
    presentations_digest,
    read_pairs,
    read_presentations,
)
from .plots import score_plot
from .registry import get_version, resolve_all
from .targets import TARGETS, TargetResult, TaskTargets, as_record, check

FMR_TARGETS = (0.0, 1e-2, 1e-3)
APCER_TARGET = 0.05
Progress = Callable[[str], None]


class EvaluationError(Exception):
    """The model could not be run on the set (e.g. its input does not fit the crops)."""


@dataclass
class Evaluation:
    task: str
    model: ModelChoice
    dataset: str
    dataset_digest: str
    positives: list[float]  # genuine pair / bona fide scores: should be high
    negatives: list[float]  # impostor pair / attack scores: should be low
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[TargetResult] = field(default_factory=list)
    record: EvaluationRecord | None = None
    plot: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.targets) and all(result.passed for result in self.targets)

    def summary(self) -> str:
        lines = [f"{key}: {value}" for key, value in self.metrics.items()]
        lines.append(f"labelled set {self.dataset}: sha256 {self.dataset_digest}")
        if self.targets:
            lines.append("targets:")
            lines += [f"  {result.describe()}" for result in self.targets]
            verdict = "meets" if self.passed else "does NOT meet"
            lines.append(f"{self.model.ref} {verdict} the {self.task} targets")
        return "\n".join(lines)


def threshold_at(negatives: np.ndarray, target: float) -> float:
    """The lowest threshold at which at most ``target`` of ``negatives`` score at or above it."""
    if len(negatives) == 0:
        return float("-inf")
    allowed = int(np.floor(target * len(negatives) + 1e-9))
    ranked = np.sort(negatives)[::-1]
    if allowed >= len(ranked):
        return float(ranked[-1])
    return float(np.nextafter(ranked[allowed], np.inf))


def rates(positives: np.ndarray, negatives: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false accept rate of negatives, false reject rate of positives) at ``threshold``."""
    false_accept = float((negatives >= threshold).mean()) if len(negatives) else float("nan")
    false_reject = float((positives < threshold).mean()) if len(positives) else float("nan")
    return false_accept, false_reject


def _spread(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    return {
        "min": round(float(values.min()), 4),
        "median": round(float(np.median(values)), 4),
        "max": round(float(values.max()), 4),
    }


def embed_metrics(genuine: np.ndarray, impostor: np.ndarray, model: ModelChoice) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "genuine_scores": _spread(genuine),
        "impostor_scores": _spread(impostor),
        "smallest_measurable_fmr": round(1 / len(impostor), 6) if len(impostor) else None,
        "fnmr_at_fmr": {},
    }
    for target in FMR_TARGETS:
        threshold = threshold_at(impostor, target)
        fmr, fnmr = rates(genuine, impostor, threshold)
        metrics["fnmr_at_fmr"][f"{target:g}"] = {
            "threshold": round(threshold, 4),
            "fnmr": round(fnmr, 4),
            "fmr": round(fmr, 4),
        }
    for name, threshold in (("at_accept", model.accept), ("at_reject", model.reject)):
        if threshold is not None:
            fmr, fnmr = rates(genuine, impostor, threshold)
            metrics[name] = {"threshold": threshold, "fmr": round(fmr, 4), "fnmr": round(fnmr, 4)}
    return metrics


def liveness_metrics(
    bona_fide: np.ndarray,
    attacks: np.ndarray,
    attack_kinds: list[str],
    model: ModelChoice,
    bona_fide_kinds: list[str] | None = None,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "bona_fide": len(bona_fide),
        "attacks": len(attacks),
        "bona_fide_scores": _spread(bona_fide),
        "attack_scores": _spread(attacks),
    }
    for name, threshold in (("at_accept", model.accept), ("at_reject", model.reject)):
        if threshold is not None:
            apcer, bpcer = rates(bona_fide, attacks, threshold)
            metrics[name] = {
                "threshold": threshold,
                "apcer": round(apcer, 4),
                "bpcer": round(bpcer, 4),
            }
    threshold = threshold_at(attacks, APCER_TARGET)
    apcer, bpcer = rates(bona_fide, attacks, threshold)
    metrics["bpcer_at_apcer_5pct"] = {
        "threshold": round(threshold, 4),
        "bpcer": round(bpcer, 4),
        "apcer": round(apcer, 4),
    }
    if model.accept is not None:
        kinds = np.asarray(attack_kinds)
        metrics["apcer_at_accept_by_attack"] = {
            kind: round(float((attacks[kinds == kind] >= model.accept).mean()), 4)
            for kind in sorted(set(attack_kinds))
        }
    if model.accept is not None and model.reject is not None:
        metrics["by_kind"] = _by_kind(
            bona_fide, attacks, bona_fide_kinds or ["live"] * len(bona_fide), attack_kinds, model
        )
    metrics["thresholds_this_set_suggests"] = suggested_thresholds(bona_fide, attacks)
    return metrics


def _by_kind(
    bona_fide: np.ndarray,
    attacks: np.ndarray,
    bona_fide_kinds: list[str],
    attack_kinds: list[str],
    model: ModelChoice,
) -> dict[str, dict[str, float]]:
    """The three liveness targets per kind at the version's thresholds: attacks approved per
    attack group (``print/held-up`` -> ``print``), bona fide declined and bona fide not
    approved automatically (declined or sent to review) per bona fide kind."""

    def share(values: np.ndarray, labels: np.ndarray, label: str, hit) -> float:
        return round(float(hit(values[labels == label]).mean()), 4)

    groups = np.asarray([kind.split("/")[0] for kind in attack_kinds], dtype=object)
    live = np.asarray(bona_fide_kinds, dtype=object)
    return {
        "attacks_approved": {
            g: share(attacks, groups, g, lambda v: v >= model.accept) for g in sorted(set(groups))
        },
        "bona_fide_declined": {
            k: share(bona_fide, live, k, lambda v: v < model.reject) for k in sorted(set(live))
        },
        "bona_fide_not_approved": {
            k: share(bona_fide, live, k, lambda v: v < model.accept) for k in sorted(set(live))
        },
    }


def suggested_thresholds(bona_fide: np.ndarray, attacks: np.ndarray) -> dict[str, float]:
    """Thresholds this set would give: ``accept`` approves at most 5 % of its attacks,
    ``reject`` declines at most 5 % of its bona fide (never above ``accept``). Set them from
    a tuning set and measure on another."""
    if len(attacks) == 0 or len(bona_fide) == 0:
        return {}
    accept = threshold_at(attacks, APCER_TARGET)
    ranked = np.sort(bona_fide)
    reject = float(ranked[int(np.floor(APCER_TARGET * len(ranked) + 1e-9))])
    return {"accept": round(accept, 4), "reject": round(min(reject, accept), 4)}


class _Faces:
    """Decoded images and their subject face (models/face/selection.py), each computed once."""

    def __init__(self, models: FaceModels) -> None:
        self.models = models
        self._seen: dict[Path, tuple[np.ndarray, FaceObservation] | None] = {}
        self.measures: dict[Path, QualityMeasures] = {}

    def subject(self, path: Path) -> tuple[np.ndarray, FaceObservation] | None:
        if path not in self._seen:
            try:
                image = decode_image(path.read_bytes())
                faces, self.measures[path] = observe_faces(image, self.models)
                self._seen[path] = (image, faces[0]) if faces else None
            except (OSError, InputRejected):
                self._seen[path] = None
        return self._seen[path]

    @property
    def failures(self) -> int:
        return sum(1 for found in self._seen.values() if found is None)


def score_pairs(faces: _Faces, labelled: Path, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    pairs = read_pairs(labelled)
    embeddings: dict[Path, np.ndarray | None] = {}
    for path in sorted({p for pair in pairs for p in (pair.a, pair.b)}):
        found = faces.subject(path)
        embeddings[path] = face_embedding(*found, faces.models) if found else None
    progress(f"embedded {len(embeddings)} images ({faces.failures} without a usable face)")
    genuine, impostor = [], []
    for pair in pairs:
        a, b = embeddings[pair.a], embeddings[pair.b]
        if a is not None and b is not None:
            (genuine if pair.same else impostor).append(cosine_similarity(a, b))
    return np.asarray(genuine), np.asarray(impostor)


def genuine_quality_retry(faces: _Faces, labelled: Path) -> dict[str, Any]:
    """How many genuine pairs the quality check sends back (decision ``retry``): the first
    photo judged as a selfie, the second as a document, as a verification would."""
    reasons: Counter[str] = Counter()
    pairs = retried = 0
    for pair in read_pairs(labelled):
        if not pair.same or pair.a not in faces.measures or pair.b not in faces.measures:
            continue
        found = [
            *assess_quality(ImageRole.SELFIE, faces.measures[pair.a]),
            *assess_quality(ImageRole.DOCUMENT, faces.measures[pair.b]),
        ]
        pairs += 1
        retried += bool(found)
        reasons.update(reason.value for reason in set(found))
    return {
        "pairs": pairs,
        "retried": retried,
        "rate": round(retried / pairs, 4) if pairs else None,
        "reasons": dict(reasons.most_common()),
    }


def score_presentations(
    faces: _Faces, labelled: Path, progress: Progress
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    bona_fide, attacks, kinds, live_kinds = [], [], [], []
    for presentation in read_presentations(labelled):
        found = faces.subject(presentation.image)
        if found is None:
            continue
        score = liveness_score(*found, faces.models)
        if presentation.live:
            bona_fide.append(score)
            live_kinds.append(presentation.kind)
        else:
            attacks.append(score)
            kinds.append(presentation.kind)
    progress(
        f"scored {len(bona_fide) + len(attacks)} presentations "
        f"({faces.failures} without a usable face)"
    )
    return np.asarray(bona_fide), np.asarray(attacks), kinds, live_kinds


def evaluate(
    engine: Engine,
    cache_root: Path,
    task: ModelTask,
    labelled: Path,
    model: str | None = None,
    record: bool = True,
    progress: Progress = print,
    *,
    name: str | None = None,
    evaluated_by: str = "idflow",
    targets: dict[str, TaskTargets] = TARGETS,
) -> Evaluation:
    """Evaluate ``model`` (an alias or name@version; default the task's production
    version) on the labelled set ``labelled`` (called ``name``, default its file
    name) and check the task's targets. Unless ``record`` is False, the
    evaluation is added to the version's history with its plot, and the card is
    rendered again."""
    if task not in DECIDING_TASKS:
        raise ValueError(f"evaluation covers the tasks {', '.join(DECIDING_TASKS)}, not {task!r}")
    choices = resolve_all(engine, {task: model} if model else {})
    choice = choices[task]
    if task == ModelTask.EMBED:
        items: list = read_pairs(labelled)
        digest = pairs_digest(items)
    else:
        items = read_presentations(labelled)
        digest = presentations_digest(items)
    if not items:
        raise LabelledSetError(f"labelled set {labelled} holds no images")
    progress(f"evaluating {choice.ref} ({task}) on {labelled} ({len(items)} items)")
    with ModelServer(cache_root) as server:
        faces = _Faces(FaceModels.load(server, {t: choices[t] for t in (*QUALITY_TASKS, task)}))
        try:
            if task == ModelTask.EMBED:
                positives, negatives = score_pairs(faces, labelled, progress)
                classes = ("genuine pairs", "impostor pairs")
            else:
                positives, negatives, kinds, live_kinds = score_presentations(
                    faces, labelled, progress
                )
                classes = ("bona fide presentations", "attack presentations")
        except (LabelledSetError, EvaluationError):
            raise
        except Exception as error:  # onnxruntime raises untyped errors: name the model
            detail = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise EvaluationError(f"{choice.ref} cannot run on this set: {detail}") from None
    for scores, what in zip((positives, negatives), classes, strict=True):
        if len(scores) == 0:
            raise LabelledSetError(
                f"labelled set {labelled} has no {what} with a usable face "
                f"({faces.failures} images without one)"
            )
    if task == ModelTask.EMBED:
        metrics = embed_metrics(positives, negatives, choice)
        metrics["genuine_quality_retry"] = genuine_quality_retry(faces, labelled)
        names, errors = ("genuine", "impostor"), ("FNMR", "FMR")
    else:
        metrics = liveness_metrics(positives, negatives, kinds, choice, live_kinds)
        names, errors = ("bona fide", "attack"), ("BPCER", "APCER")
    dataset = name or labelled.name
    metrics = {
        "dataset": dataset,
        "failed_to_acquire": faces.failures,
        **metrics,
        "evaluated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    task_targets = targets.get(task, ())
    evaluation = Evaluation(
        task,
        choice,
        dataset,
        digest,
        positives.tolist(),
        negatives.tolist(),
        metrics,
        check(metrics, task_targets),
    )
    if record:
        evaluation.plot = plot_path(cache_root, choice.ref, uuid.uuid4().hex[:12])
        evaluation.plot.parent.mkdir(parents=True, exist_ok=True)
        thresholds = {
            k: v for k, v in (("accept", choice.accept), ("reject", choice.reject)) if v is not None
        }
        score_plot(
            f"{choice.ref} on {dataset}", positives, negatives, names, errors, thresholds
        ).save(evaluation.plot)
        evaluation.record = evaluations.add(
            engine,
            EvaluationRecord(
                version_id=get_version(engine, choice.ref).id,
                task=task,
                ref=choice.ref,
                dataset=dataset,
                dataset_digest=digest,
                dataset_items=len(items),
                metrics=metrics,
                targets=as_record(task_targets),
                passed=evaluation.passed,
                plot=evaluation.plot.name,
                evaluated_by=evaluated_by,
            ),
        )
        write_cards(engine, cache_root, [choice.ref])
    return evaluation
