"""Model cards: one markdown page per registered version, rendered from the registry.

Cards live in ``<model_cache>/cards/<name>@<version>.md``; each evaluation's
plot goes beside it as ``<name>@<version>.evaluation-<key>.png`` (``plot_path``)
and the card lists every evaluation of the version with its labelled set,
digest, targets and plot. Cards are derived data: re-render them whenever the
registry changes (``idflow models card``).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from domain.signatures import ModelSignature
from models.cache import CARDS

from .evaluations import EvaluationRecord, history
from .registry import ModelVersion, current_aliases, get_version, list_versions, signature_of
from .targets import TARGETS, check


def card_path(cache_root: Path, ref: str) -> Path:
    return cache_root / CARDS / f"{ref}.md"


def plot_path(cache_root: Path, ref: str, key: str) -> Path:
    """Where the evaluation ``key`` of ``ref`` writes its DET / score-histogram plot."""
    return cache_root / CARDS / f"{ref}.evaluation-{key}.png"


def write_cards(engine: Engine, cache_root: Path, refs: list[str] | None = None) -> list[Path]:
    """Render the cards of ``refs`` (default: every registered version); their paths."""
    versions = [get_version(engine, ref) for ref in refs] if refs else list_versions(engine)
    aliases = current_aliases(engine)
    written = []
    for version in versions:
        path = card_path(cache_root, version.ref)
        evaluations = history(engine, version.id)
        _write_atomically(
            path,
            render_card(
                version,
                aliases.get(version.ref, []),
                evaluations,
                signature_of(engine, version.ref),
            ),
        )
        written.append(path)
    return written


def render_card(
    version: ModelVersion,
    aliases: list[str],
    evaluations: list[EvaluationRecord] = (),
    signature: ModelSignature | None = None,
) -> str:
    source = f"{version.source_registry} `{version.source_spec}`"
    if version.source_member:
        source += f", file `{version.source_member}`"
    lines = [
        f"# {version.ref}",
        "",
        f"Task **{version.task}**; aliases now: {', '.join(aliases) or 'none'}.",
        "",
        "| | |",
        "|---|---|",
        f"| Source | {source} |",
        f"| File | `{version.filename}` |",
        f"| sha256 | `{version.sha256}` |",
        f"| Licence | {version.licence} |",
        f"| Registered | {utc_minute(version.created_at)} |",
        "",
        "## Licence caveats",
        "",
        version.caveats or "None recorded.",
        "",
        "## Signature",
        "",
        f"- Tensors: {version.input_spec or 'not recorded'}",
        *(
            [f"- {line}" for line in signature.describe()]
            if signature
            else ["- None recorded: the pipeline cannot run it; import it again with --signature"]
        ),
        "",
        "## Decision thresholds",
        "",
        _thresholds(version.thresholds),
        "",
        "## Measured metrics",
        "",
        _metrics(version.metrics) if version.metrics else "None declared.",
        "",
        "## Evaluations",
        "",
        *_evaluations(version, evaluations),
    ]
    return "\n".join(lines) + "\n"


def _evaluations(version: ModelVersion, evaluations: list[EvaluationRecord]) -> list[str]:
    """Every evaluation of the version (kept, never overwritten), then the newest in full."""
    if not evaluations:
        return ["None yet: run `idflow models evaluate` on a labelled set."]
    targets = TARGETS.get(version.task, ())
    lines = [
        "Oldest first. *Targets* are checked against the targets in force now"
        + (" (see `idflow models evaluate --help`)." if targets else ": this task has none."),
        "",
        "| # | evaluated | by | labelled set | set sha256 | items | targets | plot |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in evaluations:
        results = check(record.metrics, targets)
        missed = [r.target.label for r in results if not r.passed]
        verdict = ("missed: " + ", ".join(missed)) if missed else ("met" if targets else "-")
        plot = f"[plot]({record.plot})" if record.plot else "-"
        lines.append(
            f"| {record.id} | {utc_minute(record.evaluated_at)} | {record.evaluated_by} "
            f"| {record.dataset} | `{record.dataset_digest[:16]}` | {record.dataset_items} "
            f"| {verdict} | {plot} |"
        )
    newest = evaluations[-1]
    lines += ["", f"### Evaluation {newest.id} (newest)", "", _metrics(newest.metrics)]
    lines += [f"- {r.describe()}" for r in check(newest.metrics, targets)]
    if newest.plot:
        lines += ["", f"![evaluation {newest.id} of {version.ref}]({newest.plot})"]
    return lines


def utc_minute(moment: datetime) -> str:
    """A database timestamp as UTC (SQLite returns naive UTC, PostgreSQL aware)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _thresholds(thresholds: dict[str, float]) -> str:
    if not thresholds:
        return "None: the score is not used for a decision on its own."
    rules = []
    if "accept" in thresholds:
        rules.append(f"score >= {thresholds['accept']} passes")
    if "reject" in thresholds:
        rules.append(f"score < {thresholds['reject']} fails")
    if len(rules) == 2:
        rules.append("in between goes to review")
    return ", ".join(rules) + "."


def _metrics(metrics: dict[str, Any], depth: int = 0) -> str:
    lines = []
    for key, value in metrics.items():
        indent = "  " * depth
        if isinstance(value, dict):
            lines.append(f"{indent}- {key}:")
            lines.append(_metrics(value, depth + 1))
        else:
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"{indent}- {key}: {shown}")
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)
