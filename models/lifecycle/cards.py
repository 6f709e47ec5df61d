"""Model cards: one markdown page per registered version, rendered from the registry.

Cards live in ``<model_cache>/cards/<name>@<version>.md``; an evaluation plot
for the version goes beside it as ``<name>@<version>.png`` (``plot_path``) and
the card links it when it exists. Cards are derived data: re-render them
whenever the registry changes (``idflow models card``).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from .cache import CARDS
from .registry import ModelVersion, current_aliases, get_version, list_versions
from .sources import PREPROCESSING


def card_path(cache_root: Path, ref: str) -> Path:
    return cache_root / CARDS / f"{ref}.md"


def plot_path(cache_root: Path, ref: str) -> Path:
    """Where the evaluation writes the DET / score-histogram plot of ``ref``."""
    return cache_root / CARDS / f"{ref}.png"


def write_cards(engine: Engine, cache_root: Path, refs: list[str] | None = None) -> list[Path]:
    """Render the cards of ``refs`` (default: every registered version); their paths."""
    versions = [get_version(engine, ref) for ref in refs] if refs else list_versions(engine)
    aliases = current_aliases(engine)
    written = []
    for version in versions:
        path = card_path(cache_root, version.ref)
        plot = plot_path(cache_root, version.ref)
        _write_atomically(
            path,
            render_card(version, aliases.get(version.ref, []), plot if plot.exists() else None),
        )
        written.append(path)
    return written


def render_card(version: ModelVersion, aliases: list[str], plot: Path | None = None) -> str:
    source = f"{version.source_registry} `{version.source_spec}`"
    if version.source_member:
        source += f", file `{version.source_member}`"
    preprocessing = PREPROCESSING.get(version.preprocessing, "(unknown preprocessing id)")
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
        "## Input",
        "",
        f"- Tensors: {version.input_spec or 'not recorded'}",
        f"- Preprocessing `{version.preprocessing}`: {preprocessing}",
        "",
        "## Decision thresholds",
        "",
        _thresholds(version.thresholds),
        "",
        "## Measured metrics",
        "",
        _metrics(version.metrics)
        if version.metrics
        else "None yet: run `idflow models evaluate` on a labelled set.",
    ]
    if plot is not None:
        lines += ["", "## Evaluation plot", "", f"![evaluation plot of {version.ref}]({plot.name})"]
    return "\n".join(lines) + "\n"


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
