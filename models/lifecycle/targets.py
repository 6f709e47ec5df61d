"""What an evaluation must show before a model version may decide verifications.

Each evaluated task has targets: error rates read from the evaluation's
metrics (at the version's own thresholds where the decision is made there),
each with a ceiling, and the smallest labelled set that can show them (a rate
of 5 % cannot be shown on fewer than 20 samples: one error is already 1/n).
``check`` is plain arithmetic on recorded metrics, so a promotion re-checks a
recorded evaluation against the targets in force when it moves the alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.enums import ModelTask


@dataclass(frozen=True)
class Target:
    label: str  # what it means for people, e.g. "attacks approved"
    metric: tuple[str, ...]  # path into the evaluation metrics
    at_most: float  # the rate must not exceed this
    samples: str | tuple[str, ...]  # metrics key (or path) counting the class it is measured on
    min_samples: int  # the fewest samples of that class that can show ``at_most``

    @property
    def samples_path(self) -> tuple[str, ...]:
        return (self.samples,) if isinstance(self.samples, str) else self.samples

    @property
    def samples_name(self) -> str:
        return self.samples_path[-1]

    def describe(self) -> str:
        return (
            f"{self.label} <= {self.at_most:.2%} (needs >= {self.min_samples} {self.samples_name})"
        )


@dataclass(frozen=True)
class TargetResult:
    target: Target
    value: float | None  # None: not measured
    samples: int
    passed: bool

    def describe(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        if self.samples < self.target.min_samples:
            shown = f"not measurable on {self.samples} {self.target.samples_name}"
        elif self.value is None:
            shown = "not measured (no threshold)"
        else:
            shown = f"{self.value:.2%}"
        return f"{verdict}  {self.target.label}: {shown} (target <= {self.target.at_most:.2%})"


TaskTargets = tuple[Target, ...]

# The targets of issue 9, per task. A task without targets is not gated.
TARGETS: dict[ModelTask, TaskTargets] = {
    # Liveness reads what verifications decide (evaluate.decision_metrics): the quality check
    # first, then the bands. An attack sent back to capture again is not approved and is
    # left out of the attack rate (it is judged when it returns); a bona fide sent back is
    # not declined but is not approved either.
    ModelTask.LIVENESS: (
        Target(
            "attacks approved (of those the quality check lets through)",
            ("decided", "attacks_approved"),
            0.05,
            ("decided", "attacks_judged"),
            20,
        ),
        Target(
            "bona fide declined",
            ("decided", "bona_fide_declined"),
            0.05,
            ("decided", "bona_fide"),
            20,
        ),
        Target(
            "bona fide not approved automatically (review, declined or retry)",
            ("decided", "bona_fide_not_approved"),
            0.15,
            ("decided", "bona_fide"),
            7,
        ),
    ),
    ModelTask.EMBED: (
        Target("FNMR at FMR 0.1%", ("fnmr_at_fmr", "0.001", "fnmr"), 0.01, "impostor_pairs", 1000),
        Target(
            "impostors accepted (FMR at accept)",
            ("at_accept", "fmr"),
            0.001,
            "impostor_pairs",
            1000,
        ),
        Target(
            "genuine pairs not accepted (FNMR at accept)",
            ("at_accept", "fnmr"),
            0.01,
            "genuine_pairs",
            100,
        ),
    ),
}


def check(metrics: dict[str, Any], targets: TaskTargets) -> list[TargetResult]:
    """Each target against ``metrics`` (as ``models.evaluate`` records them)."""
    results = []
    for target in targets:
        value, samples = (_read(metrics, path) for path in (target.metric, target.samples_path))
        samples = int(samples or 0)
        measured = isinstance(value, (int, float)) and samples >= target.min_samples
        passed = measured and float(value) <= target.at_most + 1e-12
        results.append(
            TargetResult(target, float(value) if measured else None, samples, bool(passed))
        )
    return results


def _read(metrics: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def as_record(targets: TaskTargets) -> list[dict[str, Any]]:
    """The targets as plain data, kept with each evaluation."""
    return [
        {
            "label": t.label,
            "metric": "/".join(t.metric),
            "at_most": t.at_most,
            "min_samples": t.min_samples,
            "samples": "/".join(t.samples_path),
        }
        for t in targets
    ]
