"""Canary shares and shadows: which versions a verification gets, deterministically."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.cache import model_file
from models.lifecycle.compare import parse_window
from models.lifecycle.registry import (
    InvalidRegistration,
    alias_history,
    get_version,
    register_version,
    set_alias,
    signature_of,
)
from models.lifecycle.rollout import in_canary, resolve_verification, set_canary_share

EMBED = "faceplugin-fr-feature@0.0.1"


def test_the_same_id_always_gets_the_same_choice() -> None:
    ids = [uuid.uuid4().hex for _ in range(200)]
    first = [in_canary(i, 37.5) for i in ids]
    assert first == [in_canary(i, 37.5) for i in ids]
    # A larger share keeps every id the smaller one had: raising it only adds verifications.
    assert all(in_canary(i, 60) for i, chosen in zip(ids, first, strict=True) if chosen)


@pytest.mark.parametrize("percent", [0, 1, 10, 50, 100])
def test_the_share_is_near_the_percentage_over_many_ids(percent: float) -> None:
    ids = [f"verification-{n}" for n in range(20_000)]
    share = 100 * sum(in_canary(i, percent) for i in ids) / len(ids)
    assert abs(share - percent) < 0.6  # ~4 standard deviations at 50 %


def copy_of(engine: Engine, cache: Path, ref: str, version: str) -> str:
    base = get_version(engine, ref)
    return register_version(
        engine,
        cache,
        model_file(cache, base.name, base.version, base.sha256),
        task=base.task,
        name=base.name,
        version=version,
        sha256=base.sha256,
        licence=base.licence,
        signature=signature_of(engine, ref),
        thresholds=dict(base.thresholds),
    ).ref


def test_canary_and_shadow_choices(model_registry_engine: Engine, scratch_cache: Path) -> None:
    engine = model_registry_engine
    canary = copy_of(engine, scratch_cache, EMBED, "0.0.2-canary")
    shadow = copy_of(engine, scratch_cache, EMBED, "0.0.3-shadow")
    with pytest.raises(InvalidRegistration, match="has no canary alias"):
        set_canary_share(engine, "embed", 10, "ann")
    set_alias(engine, "embed", "canary", canary, "ann", force=True, reason="test")
    set_alias(engine, "embed", "shadow", shadow, "ann")

    plain = resolve_verification(engine, "v-1", {})
    assert plain.deciding["embed"].ref == EMBED and plain.canary == []  # share 0 so far
    assert plain.shadow["embed"].ref == shadow and "liveness" not in plain.shadow

    assert set_canary_share(engine, "embed", 100, "ann") == 0
    routed = resolve_verification(engine, "v-1", {})
    assert (routed.deciding["embed"].ref, routed.deciding["embed"].alias) == (canary, "canary")
    assert routed.canary == ["embed"] and routed.shadow["embed"].ref == shadow

    pinned = resolve_verification(engine, "v-1", {"embed": EMBED})
    assert pinned.deciding["embed"].ref == EMBED and pinned.canary == [] and pinned.shadow == {}

    set_alias(engine, "embed", "shadow", canary, "ann")  # the shadow is what decides: no shadow
    assert resolve_verification(engine, "v-1", {}).shadow == {}

    set_canary_share(engine, "embed", 12.5, "bo")
    notes = [(m.moved_by, m.note) for m in alias_history(engine, "embed", "canary")]
    assert notes[-2:] == [("ann", "share 0% -> 100%"), ("bo", "share 100% -> 12.5%")]
    with pytest.raises(InvalidRegistration, match=re.escape("percentage 0..100")):
        set_canary_share(engine, "embed", 120, "bo")


def test_time_windows() -> None:
    assert parse_window("24h") == timedelta(hours=24)
    assert parse_window("7d") == timedelta(days=7)
    assert parse_window("30m") == timedelta(minutes=30)
    with pytest.raises(ValueError, match="24h"):
        parse_window("yesterday")
