"""Measure a model version on a labelled set; record the numbers and draw the plot.

- embed: cosine scores of genuine and impostor pairs; FNMR at FMR = 0, 1e-2 and
  1e-3 with the threshold that reaches each, FMR/FNMR at the version's accept
  and reject thresholds, and how many genuine pairs the quality check would
  send back to capture again (with the reasons).
- liveness: P(live) of bona fide and attack presentations; APCER and BPCER at
  the accept and reject thresholds (ISO/IEC 30107-3 terms), BPCER at APCER 5%,
  and APCER per attack kind.

The set is split into tune and holdout by source photo / subject
(``labelled_sets.split_groups``; ``split=False`` / ``--no-split`` for a set held out as a
whole): thresholds are suggested from tune, the targets are reported on both parts, and
the holdout's are the evidence a promotion reads. Liveness is also reported as the
decisions verifications would make: the selfie's quality rules first (retry), then the
version's bands; the liveness targets read those (``decision_metrics``).

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from domain.contracts import FaceObservation, ModelChoice, QualityMeasures
from domain.enums import DECIDING_TASKS, QUALITY_TASKS, ImageRole, ModelTask
from domain.errors import InputRejected
from domain.policy import Band, band
from domain.quality_rules import assess_quality
from domain.reasons import Decision, ReasonCode
from domain.signatures import ModelSignature
from models.face import FaceModels, decode_image, face_embedding, liveness_score, observe_faces
from models.face.pipeline import cosine_similarity
from models.serving import ModelServer

from . import evaluations
from .cards import plot_path, write_cards
from .evaluations import EvaluationRecord
from .labelled_sets import (
    LabelledSetError,
    Pair,
    Presentation,
    pairs_digest,
    presentations_digest,
    read_pairs,
    read_presentations,
    split_groups,
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
    tune_targets: list[TargetResult] = field(default_factory=list)  # the same, on tune

    @property
    def passed(self) -> bool:
        return bool(self.targets) and all(result.passed for result in self.targets)

    def summary(self) -> str:
        lines = [f"{key}: {value}" for key, value in self.metrics.items() if key != "tune"]
        lines += [f"tune {key}: {value}" for key, value in self.metrics.get("tune", {}).items()]
        lines.append(f"labelled set {self.dataset}: sha256 {self.dataset_digest}")
        if self.tune_targets:
            lines.append("targets on tune (where thresholds are chosen):")
            lines += [f"  {result.describe()}" for result in self.tune_targets]
        if self.targets:
            lines.append("targets on holdout (the evidence a promotion reads):")
            lines += [f"  {result.describe()}" for result in self.targets]
            verdict = "meets" if self.passed else "does NOT meet"
            lines.append(f"{self.model.ref} {verdict} the {self.task} targets on holdout")
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
    """Decoded images, their subject face (models/face/selection.py), quality measures and
    scores, each computed once. With the liveness version's signature, the measures include
    whether its crops rest on enough pixels (domain/quality_rules.py)."""

    def __init__(self, models: FaceModels, liveness: ModelSignature | None = None) -> None:
        self.models = models
        self.liveness_signature = liveness
        self._seen: dict[Path, tuple[np.ndarray, FaceObservation] | None] = {}
        self.measures: dict[Path, QualityMeasures] = {}
        self._scores: dict[tuple[str, Path], Any] = {}

    def subject(self, path: Path) -> tuple[np.ndarray, FaceObservation] | None:
        if path not in self._seen:
            try:
                image = decode_image(path.read_bytes())
                faces, self.measures[path] = observe_faces(
                    image, self.models, self.liveness_signature
                )
                self._seen[path] = (image, faces[0]) if faces else None
            except (OSError, InputRejected):
                self._seen[path] = None
        return self._seen[path]

    def embedding(self, path: Path) -> np.ndarray | None:
        return self._score("embed", path, face_embedding)

    def liveness(self, path: Path) -> float | None:
        return self._score("liveness", path, liveness_score)

    def _score(self, what: str, path: Path, score: Callable[..., Any]) -> Any:
        if (what, path) not in self._scores:
            found = self.subject(path)
            self._scores[what, path] = score(*found, self.models) if found else None
        return self._scores[what, path]

    @property
    def failures(self) -> int:
        return sum(1 for found in self._seen.values() if found is None)


def score_pairs(faces: _Faces, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    genuine, impostor = [], []
    for pair in pairs:
        a, b = faces.embedding(pair.a), faces.embedding(pair.b)
        if a is not None and b is not None:
            (genuine if pair.same else impostor).append(cosine_similarity(a, b))
    return np.asarray(genuine), np.asarray(impostor)


def genuine_quality_retry(faces: _Faces, pairs: list[Pair]) -> dict[str, Any]:
    """How many genuine pairs the quality check sends back (decision ``retry``): the first
    photo judged as a selfie, the second as a document, as a verification would."""
    reasons: Counter[str] = Counter()
    counted = retried = 0
    for pair in pairs:
        if not pair.same or pair.a not in faces.measures or pair.b not in faces.measures:
            continue
        found = [
            *assess_quality(ImageRole.SELFIE, faces.measures[pair.a]),
            *assess_quality(ImageRole.DOCUMENT, faces.measures[pair.b]),
        ]
        counted += 1
        retried += bool(found)
        reasons.update(reason.value for reason in set(found))
    return {
        "pairs": counted,
        "retried": retried,
        "rate": round(retried / counted, 4) if counted else None,
        "reasons": dict(reasons.most_common()),
    }


@dataclass(frozen=True)
class Judged:
    """One liveness presentation as a verification would see it."""

    score: float
    live: bool
    kind: str
    quality: tuple[ReasonCode, ...]  # the selfie's quality reasons: any means retry


def judge_presentations(faces: _Faces, presentations: list[Presentation]) -> list[Judged]:
    judged = []
    for presentation in presentations:
        score = faces.liveness(presentation.image)
        if score is not None:
            quality = assess_quality(ImageRole.SELFIE, faces.measures[presentation.image])
            judged.append(Judged(score, presentation.live, presentation.kind, tuple(quality)))
    return judged


def decision_metrics(judged: list[Judged], model: ModelChoice) -> dict[str, Any]:
    """What verifications would decide: the quality check first (any selfie reason: retry),
    then the liveness bands (approved / review / declined), counted per kind. The targets
    read ``decided``: attacks approved among the attacks the quality check lets through (one
    sent back is not approved; it returns as a new capture and is judged then), bona fide
    declined and bona fide not approved automatically (review, declined or retry) among all
    bona fide with a face."""
    counts: dict[str, dict[str, Counter[str]]] = {"bona_fide": {}, "attacks": {}}
    reasons: Counter[str] = Counter()
    for item in judged:
        if item.quality:
            decision = Decision.RETRY
            reasons.update(reason.value for reason in item.quality)
        else:
            decision = {
                Band.PASS: Decision.APPROVED,
                Band.UNCERTAIN: Decision.REVIEW,
                Band.FAIL: Decision.DECLINED,
            }[band(item.score, model)]
        group = "bona_fide" if item.live else "attacks"
        kind = item.kind if item.live else item.kind.split("/")[0]
        counts[group].setdefault(kind, Counter())[decision.value] += 1
    total = {group: sum(by_kind.values(), Counter()) for group, by_kind in counts.items()}
    live, attacks = total["bona_fide"], total["attacks"]
    bona_fide = sum(live.values())
    judged_attacks = attacks.total() - attacks[Decision.RETRY.value]

    def share(hits: int, of: int) -> float | None:
        return round(hits / of, 4) if of else None

    return {
        "decisions": {
            group: {kind: dict(sorted(c.items())) for kind, c in sorted(by_kind.items())}
            for group, by_kind in counts.items()
        },
        "retry_reasons": dict(reasons.most_common()),
        "decided": {
            "bona_fide": bona_fide,
            "attacks_judged": judged_attacks,
            "attacks_retried": attacks[Decision.RETRY.value],
            "attacks_approved": share(attacks[Decision.APPROVED.value], judged_attacks),
            "bona_fide_declined": share(live[Decision.DECLINED.value], bona_fide),
            "bona_fide_not_approved": share(bona_fide - live[Decision.APPROVED.value], bona_fide),
        },
    }


def _part_metrics(
    task: ModelTask, faces: _Faces, items: list, model: ModelChoice, part: str
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The metrics of one part of the set, and its positive and negative scores."""
    if task == ModelTask.EMBED:
        positives, negatives = score_pairs(faces, items)
        what = ("genuine pairs", "impostor pairs")
    else:
        judged = judge_presentations(faces, items)
        positives = np.asarray([j.score for j in judged if j.live])
        negatives = np.asarray([j.score for j in judged if not j.live])
        what = ("bona fide presentations", "attack presentations")
    for scores, name in zip((positives, negatives), what, strict=True):
        if len(scores) == 0:
            raise LabelledSetError(
                f"the {part} part of the set has no {name} with a usable face (split by "
                f"source photo / subject: add some, or --no-split for a set held out as a whole)"
            )
    if task == ModelTask.EMBED:
        metrics = embed_metrics(positives, negatives, model)
        metrics["genuine_quality_retry"] = genuine_quality_retry(faces, items)
    else:
        kinds = [j.kind for j in judged if not j.live]
        live_kinds = [j.kind for j in judged if j.live]
        metrics = liveness_metrics(positives, negatives, kinds, model, live_kinds)
        if model.accept is not None and model.reject is not None:
            metrics |= decision_metrics(judged, model)
    return metrics, positives, negatives


def _tuned(task: ModelTask, tune: dict[str, Any], model: ModelChoice) -> ModelChoice | None:
    """The version with the thresholds its tune part suggests (liveness), or with accept at
    the tune part's FMR 0.1 % threshold (embed)."""
    if task == ModelTask.EMBED:
        accept = tune["fnmr_at_fmr"]["0.001"]["threshold"]
        return replace(model, accept=accept, reject=min(model.reject or accept, accept))
    suggested = tune.get("thresholds_this_set_suggests") or {}
    return replace(model, **suggested) if suggested else None


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
    split: bool = True,
) -> Evaluation:
    """Evaluate ``model`` (an alias or name@version; default the task's production
    version) on the labelled set ``labelled`` (called ``name``, default its file
    name) and check the task's targets.

    The set is split into a tune and a holdout part by source photo / subject
    (``labelled_sets.split_groups``): thresholds are suggested from tune, the targets are
    reported on both, and the holdout's (at the version's thresholds) are the evidence a
    promotion reads. ``split=False`` takes the whole set as holdout (a set already held
    out from any tuning). Unless ``record`` is False, the evaluation is added to the
    version's history with its plot, and the card is rendered again."""
    if task not in DECIDING_TASKS:
        raise ValueError(f"evaluation covers the tasks {', '.join(DECIDING_TASKS)}, not {task!r}")
    choices = resolve_all(engine, {task: model} if model else {})
    choice = choices[task]
    if task == ModelTask.EMBED:
        items: list = read_pairs(labelled)
        digest = pairs_digest(items)
        groups_of: Callable[[Any], set[str]] = lambda pair: set(pair.groups)  # noqa: E731
    else:
        items = read_presentations(labelled)
        digest = presentations_digest(items)
        groups_of = lambda presentation: {presentation.group}  # noqa: E731
    if not items:
        raise LabelledSetError(f"labelled set {labelled} holds no images")
    groups = {group for item in items for group in groups_of(item)}
    tune_groups, holdout_groups = split_groups(groups) if split else (frozenset(), groups)
    parts = {
        part: [item for item in items if groups_of(item) <= members]
        for part, members in (("tune", tune_groups), ("holdout", holdout_groups))
        if members
    }
    progress(
        f"evaluating {choice.ref} ({task}) on {labelled} ({len(items)} items; "
        + ", ".join(f"{part} {len(part_items)}" for part, part_items in parts.items())
        + ")"
    )
    signature = choice.signature if task == ModelTask.LIVENESS else None
    with ModelServer(cache_root) as server:
        models = FaceModels.load(server, {t: choices[t] for t in (*QUALITY_TASKS, task)})
        faces = _Faces(models, signature)
        try:
            measured = {
                part: _part_metrics(task, faces, part_items, choice, part)
                for part, part_items in parts.items()
            }
        except (LabelledSetError, EvaluationError):
            raise
        except Exception as error:  # onnxruntime raises untyped errors: name the model
            detail = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise EvaluationError(f"{choice.ref} cannot run on this set: {detail}") from None
        if "holdout" not in measured:
            raise LabelledSetError(f"labelled set {labelled} has one group only: nothing held out")
        holdout, positives, negatives = measured["holdout"]
        task_targets = targets.get(task, ())
        tune_results: list[TargetResult] = []
        metrics: dict[str, Any] = {
            "dataset": name or labelled.name,
            "failed_to_acquire": faces.failures,
            "split": {
                "rule": "by source photo / subject: sha256 order, every second group held out"
                if split
                else "none: the whole set is held out",
                "tune_groups": len(tune_groups),
                "holdout_groups": len(holdout_groups),
                "tune_items": len(parts.get("tune", [])),
                "holdout_items": len(parts["holdout"]),
            },
            **holdout,
        }
        if "tune" in measured:
            tune = measured["tune"][0]
            tune_results = check(tune, task_targets)
            metrics["tune"] = tune
            tuned = _tuned(task, tune, choice)
            if tuned is not None:
                at_tuned, _, _ = _part_metrics(task, faces, parts["holdout"], tuned, "holdout")
                metrics["holdout_at_tune_thresholds"] = {
                    "accept": tuned.accept,
                    "reject": tuned.reject,
                    **{k: at_tuned[k] for k in ("decided", "at_accept") if k in at_tuned},
                    "targets": [r.describe() for r in check(at_tuned, task_targets)],
                }
    metrics["evaluated_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if task == ModelTask.EMBED:
        names, errors = ("genuine", "impostor"), ("FNMR", "FMR")
    else:
        names, errors = ("bona fide", "attack"), ("BPCER", "APCER")
    dataset = metrics["dataset"]
    evaluation = Evaluation(
        task,
        choice,
        dataset,
        digest,
        positives.tolist(),
        negatives.tolist(),
        metrics,
        check(metrics, task_targets),
        tune_targets=tune_results,
    )
    if record:
        evaluation.plot = plot_path(cache_root, choice.ref, uuid.uuid4().hex[:12])
        evaluation.plot.parent.mkdir(parents=True, exist_ok=True)
        thresholds = {
            k: v for k, v in (("accept", choice.accept), ("reject", choice.reject)) if v is not None
        }
        score_plot(
            f"{choice.ref} on {dataset} (holdout)", positives, negatives, names, errors, thresholds
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
