"""``idflow models ...``: pull, list, cards, aliases and imports of face models."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cli import backtest
from cli.main import clear_errors
from domain.enums import DECIDING_TASKS, ModelTask
from domain.errors import ModelUnavailable
from domain.signatures import ModelSignature, SignatureError
from models.cache import sha256_of
from models.errors import PullError
from models.lifecycle import evaluations, registry, rollout
from models.lifecycle.cards import utc_minute, write_cards
from models.lifecycle.checkpoints import pull_checkpoints
from models.lifecycle.compare import compare, parse_window
from models.lifecycle.converters import (
    ARCHITECTURES,
    CheckpointError,
    ConversionError,
    convert_file,
)
from models.lifecycle.evaluate import EvaluationError, evaluate
from models.lifecycle.labelled_sets import LabelledSetError, read_presentations, write_sample_sets
from models.lifecycle.liveness_sets import write_liveness_sets
from models.lifecycle.pull import pull
from models.lifecycle.samples import fetch_samples, sample_root
from models.lifecycle.targets import TARGETS
from settings import Settings
from store.engine import get_engine

# The typed errors name the file, hash, pin, signature or labelled set.
_clear_errors = clear_errors(
    PullError,
    registry.RegistryError,
    ModelUnavailable,
    LabelledSetError,
    EvaluationError,
    SignatureError,
    CheckpointError,
    ConversionError,
    action="models_command",
)

EVALUATE_HELP = """\
Labelled sets (a folder, or a CSV whose image paths are relative to the CSV;
JPEG, PNG or WebP images):

  embed     a folder with one sub-folder per person: every pair of images inside
            one folder is a genuine pair, every pair across folders an impostor;
            or a CSV with the columns a,b,same (same = 1/0, true/false, yes/no).
  liveness  a folder with live/ and attack/ (any depth below; the sub-folder of
            attack/ names the attack kind, e.g. attack/print/); or a CSV with the
            columns image,label (label = live or attack; optional column attack
            names the kind).

The set is split in two by source photo / subject, deterministically: groups (a
liveness image's file name without suffix, e.g. attack/print/obama.jpg and
live/photo/obama.jpg are one group, or a CSV column group; an embed person folder,
or in a CSV the folder above each image) ordered by sha256 of their name, every
second one held out. Thresholds are suggested from the tune part; the targets are
printed for both parts, and the holdout's are the evidence a promotion reads.
--no-split takes the whole set as holdout (a set already held out from tuning);
the --samples sets (4 people) are too small to split and are measured whole.
Liveness is reported as verifications decide: the selfie's quality rules first
(retry), then the version's bands, per kind of bona fide and attack group.

Each recorded evaluation is kept in the version's history with the set's name
and sha256 digest (over image contents and labels), its metrics, the targets
below and a DET / score plot beside the model card. The production and canary
aliases only move to a version whose evaluation meets the targets of its task
(`idflow models alias ... --force --reason` overrides, on the record).

Targets:
""" + "\n".join(
    f"  {task:9} {target.describe()}" for task, targets in TARGETS.items() for target in targets
)


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="face models: pull, registry, cards, aliases")
    commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    pull_cmd = commands.add_parser(
        "pull", help="download and verify the manifest models, register them, write their cards"
    )
    pull_cmd.add_argument(
        "--mirror",
        type=Path,
        metavar="DIR",
        help="take the checkpoints from outside the package registries (MiniFASNet) from "
        "DIR/<source>/<file> (air-gapped installs)",
    )
    pull_cmd.add_argument(
        "--upstream",
        action="store_true",
        help="download those checkpoints from their pinned upstream URLs (sha256 checked)",
    )
    pull_cmd.set_defaults(run=run_pull)

    list_cmd = commands.add_parser("list", help="registered model versions and their aliases")
    list_cmd.add_argument("--task", choices=list(ModelTask))
    list_cmd.set_defaults(run=run_list)

    card = commands.add_parser("card", help="render model cards (all versions by default)")
    card.add_argument("refs", nargs="*", metavar="NAME@VERSION")
    card.add_argument("--print", action="store_true", help="print the cards instead of their paths")
    card.set_defaults(run=run_card)

    alias = commands.add_parser(
        "alias", help="move an alias of a task to NAME@VERSION, or show its history"
    )
    alias.add_argument("task", choices=list(ModelTask))
    alias.add_argument(
        "alias",
        help="production and canary decide (gated on evaluations); shadow scores every "
        "verification beside them and decides nothing; others (candidate, ...) are names",
    )
    alias.add_argument("ref", nargs="?", metavar="NAME@VERSION", help="omit to show the history")
    alias.add_argument("--by", default=None, help="who moves it (default: the login name)")
    alias.add_argument("--note", default="", help="why it moves")
    alias.add_argument(
        "--percent",
        type=float,
        help="canary only: the share of verifications it decides, 0-100 (picked by id)",
    )
    _override_arguments(alias)
    alias.set_defaults(run=run_alias)

    compare = commands.add_parser(
        "compare",
        help="score shifts and decision flips of the shadow versions against the deciding ones",
    )
    compare.add_argument(
        "--since", default="24h", help="time window back from now: 30m, 24h, 7d, 2w (default 24h)"
    )
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(run=run_compare)

    backtest.add_parser(commands).set_defaults(run=_clear_errors(backtest.run_backtest))

    imp = commands.add_parser(
        "import",
        help="register an ONNX file (or a converted checkpoint) as a new model version",
        description="Register a model file as a new version. Its signature (a TOML or JSON "
        "file: see `idflow models signature NAME@VERSION` for examples) says how its input is "
        "built and its output read; it is checked against the ONNX graph. With --architecture "
        "the file is a checkpoint, converted to ONNX here (no PyTorch needed).",
    )
    imp.add_argument("file", type=Path, help="the .onnx file, or a checkpoint with --architecture")
    imp.add_argument("--task", required=True, choices=list(ModelTask))
    imp.add_argument("--name", required=True)
    imp.add_argument("--version", required=True)
    imp.add_argument("--sha256", required=True, help="expected sha256 of FILE")
    imp.add_argument("--licence", required=True)
    imp.add_argument("--caveats", default="")
    imp.add_argument("--source", default="", help="where the file came from (URL, package spec)")
    imp.add_argument(
        "--signature",
        required=True,
        type=Path,
        metavar="FILE",
        help="TOML or JSON: [input] crop, size, colour, values, layout; [output] reading",
    )
    imp.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        help="FILE is a checkpoint of this family, converted to ONNX: "
        + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()),
    )
    imp.add_argument("--accept", type=float, help="score at or above which the check passes")
    imp.add_argument("--reject", type=float, help="score below which the check fails")
    imp.add_argument("--alias", help="alias to point at the new version, e.g. candidate")
    imp.add_argument("--by", default=None, help="who moves the alias (default: the login name)")
    _override_arguments(imp)
    imp.set_defaults(run=run_import)

    signature = commands.add_parser(
        "signature", help="print the signature of NAME@VERSION (TOML, the form import takes)"
    )
    signature.add_argument("ref", metavar="NAME@VERSION")
    signature.set_defaults(run=run_signature)

    sets = commands.add_parser(
        "liveness-sets",
        help="write the liveness labelled sets (main, stress) from registry photos",
        description="Write DIR/liveness and DIR/stress (models/lifecycle/liveness_sets.py "
        "says exactly how each image is made), named by source photo so that `idflow models "
        "evaluate liveness DIR/liveness --model REF` splits them into tune and holdout.",
    )
    sets.add_argument("dir", type=Path)
    sets.add_argument(
        "--mirror", type=Path, metavar="DIR", help="add MiniFASNet's labelled samples from DIR"
    )
    sets.set_defaults(run=run_liveness_sets)

    # `idflow models evaluate`: models/lifecycle/evaluate.py
    evaluate = commands.add_parser(
        "evaluate",
        help="measure a model on a labelled set; record the metrics and a plot",
        description="Measure a model version on a labelled set and check its task's targets.",
        epilog=EVALUATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("task", choices=DECIDING_TASKS)
    evaluate.add_argument(
        "labelled",
        nargs="?",
        type=Path,
        help="folder or CSV of labelled images (see models/lifecycle/labelled_sets.py)",
    )
    evaluate.add_argument(
        "--samples",
        action="store_true",
        help="instead, the sets built from the registry sample photos",
    )
    evaluate.add_argument(
        "--model",
        metavar="ALIAS|NAME@VERSION",
        help="the version to measure (default: the task's production alias)",
    )
    evaluate.add_argument(
        "--name", help="the labelled set's name in the history (default: its file name)"
    )
    evaluate.add_argument("--by", default=None, help="who evaluates (default: the login name)")
    evaluate.add_argument(
        "--no-split",
        action="store_true",
        help="the set is held out from any tuning already: all of it is the evidence",
    )
    evaluate.add_argument(
        "--no-record",
        action="store_true",
        help="only print: leave the registry and the card as they are",
    )
    evaluate.set_defaults(run=run_evaluate)


@_clear_errors
def run_pull(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    report = pull(settings)
    engine = get_engine(settings.database_url)
    added = registry.register_pulled(engine, report.cache_root)
    converted = pull_checkpoints(engine, report.cache_root, args.mirror, args.upstream)
    cards = write_cards(engine, report.cache_root)
    print(f"{report.summary()}; {converted.summary()}")
    print(
        f"registered {len(added)} new model version(s); {len(cards)} card(s) in "
        f"{cards[0].parent if cards else report.cache_root}"
    )
    return 0


@_clear_errors
def run_list(args: argparse.Namespace) -> int:
    engine = get_engine(Settings.from_env().database_url)
    versions = registry.list_versions(engine, args.task)
    if not versions:
        print("no model versions registered: run `idflow models pull`")
        return 0
    aliases = registry.current_aliases(engine)
    rows = [("TASK", "MODEL", "ALIASES", "SHA256", "LICENCE", "ACCEPT", "REJECT", "EVALUATIONS")]
    for v in versions:
        rows.append(
            (
                v.task,
                v.ref,
                ",".join(aliases.get(v.ref, [])) or "-",
                v.sha256[:12],
                v.licence,
                _number(v.thresholds.get("accept")),
                _number(v.thresholds.get("reject")),
                str(len(evaluations.history(engine, v.id))) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


@_clear_errors
def run_card(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    paths = write_cards(get_engine(settings.database_url), settings.model_cache, args.refs)
    for path in paths:
        print(path.read_text() if args.print else path)
    return 0


@_clear_errors
def run_alias(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = get_engine(settings.database_url)
    if args.ref is not None:
        choice = registry.set_alias(
            engine,
            args.task,
            args.alias,
            args.ref,
            moved_by=args.by or getpass.getuser(),
            note=args.note,
            force=args.force,
            reason=args.reason,
        )
        write_cards(engine, settings.model_cache)  # cards show the aliases
        print(f"{args.task}@{args.alias} -> {choice.ref}")
    if args.percent is not None:
        if args.alias != registry.CANARY:
            raise registry.InvalidRegistration("--percent sets the share of the canary alias only")
        before = rollout.set_canary_share(
            engine, args.task, args.percent, args.by or getpass.getuser()
        )
        print(f"{args.task}@canary decides {args.percent:g}% of verifications (was {before:g}%)")
    for move in registry.alias_history(engine, args.task, args.alias):
        print(
            f"{utc_minute(move.moved_at)}  {move.previous or '-'} -> {move.target}  "
            f"by {move.moved_by}" + (f"  ({move.note})" if move.note else "")
        )
    return 0


@_clear_errors
def run_import(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = get_engine(settings.database_url)
    thresholds = {
        k: v for k, v in (("accept", args.accept), ("reject", args.reject)) if v is not None
    }
    signature = read_signature_file(args.signature)
    with tempfile.TemporaryDirectory(prefix="idflow-import-") as scratch:
        file, sha256, source = args.file, args.sha256, args.source
        if args.architecture:
            file = convert_file(args.file, args.sha256, args.architecture, Path(scratch))
            sha256 = sha256_of(file)
            source = (
                f"{args.source or args.file.name} (sha256 {args.sha256}), converted by idflow's "
                f"{args.architecture} converter"
            )
        choice = registry.register_version(
            engine,
            settings.model_cache,
            file,
            task=args.task,
            name=args.name,
            version=args.version,
            sha256=sha256,
            licence=args.licence,
            caveats=args.caveats,
            source=source,
            signature=signature,
            thresholds=thresholds,
            alias=args.alias,
            moved_by=args.by or getpass.getuser(),
            force=args.force,
            reason=args.reason,
        )
    (card,) = write_cards(engine, settings.model_cache, [choice.ref])
    print(
        f"registered {choice.ref} for {choice.task}"
        + (f", alias {choice.alias}" if choice.alias else "")
        + f"; card {card}"
    )
    return 0


@_clear_errors
def run_signature(args: argparse.Namespace) -> int:
    engine = get_engine(Settings.from_env().database_url)
    signature = registry.signature_of(engine, args.ref)
    if signature is None:
        print(f"# {args.ref} has no signature recorded")
        return 1
    print(signature.to_toml(), end="")
    return 0


@_clear_errors
def run_liveness_sets(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    folders = write_liveness_sets(args.dir, fetch_samples(sample_root(settings)), args.mirror)
    for folder in folders:
        presentations = read_presentations(folder)
        live = sum(p.live for p in presentations)
        print(f"{folder}: {live} bona fide, {len(presentations) - live} attacks")
    return 0


def read_signature_file(path: Path) -> ModelSignature:
    """The signature in a TOML or JSON file (``SignatureError`` naming the file otherwise)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SignatureError(f"cannot read signature file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SignatureError(f"signature file {path} is not text") from None
    try:
        return ModelSignature.parse(text, path.suffix.lower())
    except SignatureError as error:
        raise SignatureError(f"{path}: {error}") from None


@_clear_errors
def run_evaluate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if (args.labelled is None) != args.samples:
        print(
            "idflow models evaluate: give a labelled folder/CSV or --samples (one of them)",
            file=sys.stderr,
        )
        return 2
    if args.samples:
        identities, liveness = write_sample_sets(sample_root(settings) / "eval")
        labelled = identities if args.task == ModelTask.EMBED else liveness
    else:
        labelled = args.labelled
    evaluation = evaluate(
        get_engine(settings.database_url),
        settings.model_cache,
        args.task,
        labelled,
        args.model,
        record=not args.no_record,
        name=args.name,
        evaluated_by=args.by or getpass.getuser(),
        split=not (args.no_split or args.samples),  # 4 people: too few to split
    )
    print(evaluation.summary())
    if evaluation.record is not None:
        print(
            f"recorded evaluation #{evaluation.record.id} of {evaluation.model.ref}; "
            f"plot {evaluation.plot}"
        )
    return 0


@_clear_errors
def run_compare(args: argparse.Namespace) -> int:
    try:
        window = parse_window(args.since)
    except ValueError as error:
        raise registry.InvalidRegistration(str(error)) from None
    start = datetime.now(UTC) - window
    comparisons = compare(get_engine(Settings.from_env().database_url), start)
    if args.json:
        print(json.dumps([c.as_dict() for c in comparisons], indent=2))
        return 0
    print(f"shadow versions against the deciding ones since {utc_minute(start)} ({args.since})")
    if not comparisons:
        print("no shadow scores in this window: point a task's shadow alias at a version")
    for comparison in comparisons:
        print(comparison.describe())
    return 0


def _override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="move production/canary without a passing evaluation (needs --reason)",
    )
    parser.add_argument("--reason", default="", help="why the override: kept in the alias history")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
